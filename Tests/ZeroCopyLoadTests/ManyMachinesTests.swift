// Many generators as one: --start-at (RFC 3339 or Unix seconds) starts them together, their logs carry the same
// absolute StartTime/BaseTime, and `zcr load merge` adds them up exactly.
import Foundation
import Testing

@testable import ZeroCopyLoad

@Suite struct StartAtParseTests {
    @Test func parsesRFC3339AndUnixSeconds() throws {
        #expect(try ArgumentValues.wallClock("1764592200", flag: "--start-at") == 1_764_592_200)
        #expect(try ArgumentValues.wallClock("1764592200.25", flag: "--start-at") == 1_764_592_200.25)
        #expect(try ArgumentValues.wallClock("2025-12-01T12:30:00Z", flag: "--start-at") == 1_764_592_200)
        #expect(try ArgumentValues.wallClock("2025-12-01T12:30:00.5Z", flag: "--start-at") == 1_764_592_200.5)
        #expect(try ArgumentValues.wallClock("2025-12-01T13:30:00+01:00", flag: "--start-at") == 1_764_592_200)
        #expect(try ArgumentValues.wallClock("2025-12-01 07:00:00-05:30", flag: "--start-at") == 1_764_592_200)
        for bad in [
            "soon", "2025-12-01", "2025-13-01T00:00:00Z", "2025-12-01T12:30:00", "2025-12-01T12:30:00.Z",
            "2025-12-01T12:30:00+0100", "1e300", "-5", "inf",
        ] {
            #expect(
                throws: LoadError(
                    "--start-at: '\(bad)' is not a time (RFC 3339 such as 2026-12-01T12:30:00Z, or Unix seconds)")
            ) { try ArgumentValues.wallClock(bad, flag: "--start-at") }
        }
    }
}

extension LoadRuns {
    @Suite struct ManyMachinesTests {
        @Test func threeGeneratorsWithOneStartAtMergeToTheirSum() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let dir = temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let zcr = try Zcr.path()
            // A whole second at least 1.5 s away: time for three processes to start and connect.
            let at = (Date().timeIntervalSince1970 + 2.5).rounded(.down)
            let rfc3339 = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: at))
            let starts = [rfc3339, "\(Int(at))", "\(Int(at)).000"]
            let outputs = try await offThread { () -> Result<[ChildOutput], any Error> in
                Result {
                    let children = try (0..<3).map { i in
                        try ChildProcess([
                            zcr, "load", "--target", server.target, "--connections", "3", "--threads", "1",
                            "--rate", "600", "--duration", "600ms", "--quiet",
                            "--start-at", starts[i], "--hdr-log", "\(dir)/g\(i).hlog", "--json", "\(dir)/g\(i).json",
                        ])
                    }
                    return try children.map { try $0.finish(timeout: 60) }
                }
            }.get()
            var total = 0
            for (i, out) in outputs.enumerated() {
                #expect(out.status == 0, "generator \(i): \(out.stderrText)")
                let json = try jsonObject(String(decoding: try FileIO.read("\(dir)/g\(i).json"), as: UTF8.self))
                #expect(!((json["warnings"] as? [String]) ?? []).contains { $0.contains("--start-at") })
                total += try #require((json["latency_us"] as? [String: Any])?["count"] as? Int)
                let log = try HdrLogFile(
                    text: String(decoding: try FileIO.read("\(dir)/g\(i).hlog"), as: UTF8.self), name: "g\(i)")
                #expect(log.startTime == at)  // the intended start, the same on every generator
            }
            #expect(total > 0)
            let merged = try await runZcr(
                ["load", "merge"] + (0..<3).map { "\(dir)/g\($0).hlog" } + [
                    "-o", "\(dir)/all.hlog", "--json", "\(dir)/all.json",
                ])
            #expect(merged.status == 0, "\(merged.stderr)")
            let json = try jsonObject(String(decoding: try FileIO.read("\(dir)/all.json"), as: UTF8.self))
            #expect(json["files"] as? Int == 3)
            #expect(json["start_time"] as? Double == at)
            let latency = try #require((json["tags"] as? [String: Any])?[""] as? [String: Any])
            #expect(latency["count"] as? Int == total)
            let all = try HdrLogFile(
                text: String(decoding: try FileIO.read("\(dir)/all.hlog"), as: UTF8.self), name: "all")
            #expect(all.intervals.filter { $0.tag == nil }.map(\.histogram.totalCount).reduce(0, +) == UInt64(total))
            #expect(all.startTime == at)
        }

        @Test func aStartAtInThePastIsBadInput() async throws {
            let r = try await runZcr(["load", "--target", "127.0.0.1:9", "--quiet", "--start-at", "1700000000"])
            #expect(r.status == 2)
            #expect(r.stderrLines.count == 1)
            #expect(r.stderrLines.first?.hasPrefix("zcr load: --start-at 1700000000.000 is ") == true)
            #expect(r.stderrLines.first?.hasSuffix(" s in the past") == true)
        }
    }
}

extension LoadRuns {
    /// deploy/kubernetes/load-job.yaml's command, run as its pods would (with /bin/sh and the Job's variables):
    /// every option it documents must be accepted. Nothing listens on the target, so the run ends at once.
    @Suite struct DeployManifestTests {
        @Test func theIndexedJobsCommandIsAcceptedByZcrLoad() async throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            let yaml = try String(
                contentsOf: root.appendingPathComponent("deploy/kubernetes/load-job.yaml"), encoding: .utf8)
            // The folded (`>-`) block after `args:`: its lines joined by spaces.
            let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let start = try #require(lines.firstIndex { $0.trimmingCharacters(in: .whitespaces) == "- >-" })
            var command: [String] = []
            for line in lines[(start + 1)...] {
                let text = line.trimmingCharacters(in: .whitespaces)
                guard line.hasPrefix("              "), !text.isEmpty else { break }
                command.append(text)
            }
            let script = command.joined(separator: " ")
            #expect(script.hasPrefix("exec /usr/local/bin/zcr load "))
            let dir = temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let local = script.replacingOccurrences(of: "/usr/local/bin/zcr", with: try Zcr.path())
                .replacingOccurrences(of: "/results/", with: dir + "/")
            let target = "127.0.0.1:\(unusedPort())"
            let startAt = ISO8601DateFormatter().string(from: Date().addingTimeInterval(600))
            let out = try await offThread {
                Result {
                    try ChildProcess.run(
                        ["/bin/sh", "-c", local],
                        environment: ["TARGET": target, "START_AT": startAt, "JOB_COMPLETION_INDEX": "0"], timeout: 60)
                }
            }.get()
            // Exit 1 (the run failed: nothing listens), not 2 (an option it did not accept).
            #expect(out.status == 1, "\(out.stderrText)")
            let line = try #require(out.stderrText.split(separator: "\n").last)
            #expect(line.hasPrefix("zcr load: no connection to \(target) was established"), "\(line)")
            #expect(line.contains("; --fail-if not met: "))
            #expect(FileManager.default.fileExists(atPath: dir + "/gen-0.json"))
        }
    }
}
