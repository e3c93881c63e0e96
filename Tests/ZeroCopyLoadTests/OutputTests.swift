// Outputs and warnings that must be true: output files are checked before the run and every write after it, and
// the warnings say nothing false (no "stalled" at a low rate, no CPU-bound verdict on an empty window).
import Foundation
import Testing

@testable import ZeroCopyLoad

extension LoadRuns {
    @Suite struct OutputTests {
        @Test func anUnwritableJSONPathFailsBeforeTheRun() async throws {
            // Nothing listens on the target: had the run started, it would fail with "refused" and exit 1.
            let r = try await runZcr([
                "load", "--target", "127.0.0.1:\(unusedPort())", "--connections", "2", "--quiet",
                "--json", "/nonexistent-dir/r.json",
            ])
            #expect(r.status == 2)
            #expect(r.stderrLines == ["zcr load: --json /nonexistent-dir/r.json: No such file or directory"])
            #expect(r.stdout.isEmpty)
        }

        @Test(arguments: ["--hdr-log", "--json"])
        func aWriteThatFailsAfterTheRunIsAnErrorExit(flag: String) async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let r = try await runZcr([
                "load", "--target", server.target, "--connections", "2", "--threads", "1", "--duration", "200ms",
                "--quiet", flag, "/dev/full",
            ])
            #expect(r.status == 1)
            #expect(r.stderrLines == [Substring("zcr load: \(flag) /dev/full: write failed: No space left on device")])
            #expect(r.stdout.contains("connections: 2 of 2 established"))
        }

        @Test func aLowRateIsNotAStallButASilentServerIs() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            // 10 connections at 1 msg/s: most have nothing due in the window, and are idle, not stalled.
            let r = try await runLoad(
                { c in
                    c.connections = 10
                    c.rate = 1
                    c.duration = .milliseconds(500)
                }, target: server.target)
            #expect(r.stalledConnections == 0)
            #expect(!r.warnings.contains { $0.contains("stalled") }, "\(r.warnings)")
            #expect(!r.warnings.contains { $0.hasPrefix("sent ") }, "\(r.warnings)")
            #expect(
                r.notes.contains {
                    $0.hasPrefix("--rate 1.000 over 0.5") && $0.contains("sends due in the window, too few to judge")
                },
                "\(r.notes)")

            let tenth = try await runLoad(
                { c in
                    c.connections = 1
                    c.rate = 0.1
                    c.duration = .milliseconds(300)
                }, target: server.target)
            #expect(
                tenth.notes.contains {
                    $0.hasPrefix("--rate 0.100 over 0.3") && $0.contains(" s: 0.0 sends due in the window")
                }, "\(tenth.notes)")
            #expect(!tenth.summary.contains("of the 0 asked"))

            // Owed and silent is still a stall in open loop: a server that reads and never answers.
            let silent = try PlainServer(.sink)
            defer { silent.stop() }
            let stalled = try await runLoad(
                { c in
                    c.connections = 3
                    c.pipeline = 1
                    c.rate = 300
                    c.warmup = .milliseconds(100)
                }, target: silent.target)
            #expect(stalled.stalledConnections == 3)
        }

        @Test func anEmptyWindowIsNotCPUBound() async throws {
            // The server accepts and closes at once: the window ends as soon as it opens.
            let server = try PlainServer(.blast(bytes: 0, corruptAt: nil))
            defer { server.stop() }
            let r = try await runLoad({ c in c.connections = 4 }, target: server.target)
            #expect(r.durationSeconds < 0.1)
            #expect(!r.warnings.contains { $0.contains("CPU-bound") }, "\(r.warnings)")
            #expect(r.failure != nil)
        }
    }
}
