// `zcr profile` end to end, through the built binary: small scenarios with and without the copy control, the CI
// gate's exit status, and a bad command line. The allocation checks need zcr on jemalloc and say so when skipped.
import Foundation
import Testing

@Suite(.serialized) struct EndToEndTests {
    static let limit = ["--max-allocated-bytes-per-byte", "\(Build.allocatedPerByteLimit)"]

    @Test func seedLargeIsZeroCopyAndItsCopyControlIsCaught() async throws {
        let payload = 32 << 20
        let html = temporaryPath("seed.html")
        defer { unlink(html) }
        let (run, json) = try await Zcr.profile(
            ["--scenario", "seed-large", "--payload-mib", "32", "--report", html] + Self.limit)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("seed-large: zero copy"))
        #expect(json["bytes_sent"].int == payload)
        #expect(json["writes"].int == 1)
        #expect(json["bytes_copied"].int == 0)
        #expect(json["foreign_iovecs"].int == 0)
        #expect((json["verified_iovecs"].int ?? 0) > 0)
        #expect((json["peak_rss_growth_bytes"].int ?? .max) < payload / 4)
        let page = try #require(FileManager.default.contents(atPath: html))
        #expect(String(decoding: page, as: UTF8.self).contains("Zero copy:"))
        try Zcr.requireJemalloc(json)
        #expect(json["zero_copy"].bool == true, "\(run.stdout)")
        #expect((json["allocated_bytes_per_byte_sent"].double ?? 1) <= Build.allocatedPerByteLimit)
        #expect(json["reactor_allocations"].int != nil)

        // The same through writeCopying: every figure must show the copy, and the CI gate must fail the run.
        let (copy, copied) = try await Zcr.profile(
            ["--scenario", "seed-large", "--payload-mib", "32", "--copy-control", "--require-zero-copy"] + Self.limit)
        #expect(copy.status == 1, "--require-zero-copy with a false verdict exits 1; stderr: \(copy.stderr)")
        #expect(copied["copy_control"].bool == true)
        #expect(copied["zero_copy"].bool == false)
        #expect(copied["bytes_copied"].int == payload)
        #expect((copied["foreign_iovecs"].int ?? 0) > 0)
        #expect(copied["verified_iovecs"].int == 0)
        #expect((copied["allocated_bytes_per_byte_sent"].double ?? 0) >= 0.9)
        #expect((copied["peak_rss_growth_bytes"].int ?? 0) >= payload * 9 / 10)
        #expect(copied["verdict_checks"].array.allSatisfy { $0["passed"].bool == false })
    }

    @Test func smallManyWritesSlicesOfOneBufferWithoutCopying() async throws {
        let messages = 64 * 1024
        let (run, json) = try await Zcr.profile(["--scenario", "small-many", "--messages", "\(messages)"] + Self.limit)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(json["writes"].int == messages)
        #expect(json["bytes_sent"].int == messages * 64)
        #expect(json["bytes_copied"].int == 0)
        #expect(json["foreign_iovecs"].int == 0)
        // Checked at the syscall boundary, entry by entry: slices cut in order from one buffer share one iovec, and
        // a call carries at most 1024 slices.
        #expect((json["verified_iovecs"].int ?? 0) >= messages / 1024)
        #expect((json["slices_per_call"].double ?? 0) > 100, "1024 slices are written per loop iteration")
        try Zcr.requireJemalloc(json)
        let perWrite = try #require(json["allocations_per_write"].double)
        #expect(Build.isDebug ? perWrite < 0.05 : perWrite == 0)
        #expect(json["zero_copy"].bool == true, "\(run.stdout)")
    }

    @Test func echoConnectionsEchoWithoutCopying() async throws {
        let (run, json) = try await Zcr.profile(
            ["--scenario", "echo-1k", "--connections", "20", "--duration", "0.5", "--warmup", "0.2"] + Self.limit)
        #expect(run.status == 0, "\(run.stderr)")
        #expect((json["bytes_sent"].int ?? 0) > 0)
        #expect((json["writes"].int ?? 0) > 0)
        #expect(json["bytes_copied"].int == 0)
        #expect(json["foreign_iovecs"].int == 0)
        #expect(json["reactor_threads"].array.count == 2)
        #expect(json["timeline"].array.contains { $0["event"].string == "window_end" })
        try Zcr.requireJemalloc(json)
        #expect(json["zero_copy"].bool == true, "\(run.stdout)")
    }

    /// `tools/demo`'s command, small: the load, then seed-large, whose verdict must say zero copy (it needs the memcpy
    /// counter linked into zcr registered, as `zcr profile` does; without it the demo's verdict failed).
    @Test func theDemoLoadsProfilesAndEndsZeroCopy() async throws {
        let dir = temporaryPath("demo")
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let run = try await Zcr.run([
            "demo", "--connections", "20", "--duration", "0.5", "--message-bytes", "512", "--payload-mib", "16",
            "--output", dir,
        ])
        try #require(run.stdout.contains("allocator: jemalloc"), "zcr is not on jemalloc here: \(run.stdout)")
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
        #expect(run.stdout.contains("seed-large: zero copy YES"), "\(run.stdout)")
        #expect(run.stdout.contains("reactor threads memcpy'd 0 B"), "\(run.stdout)")
        for file in ["profile.html", "profile.json", "load.json"] {
            #expect(FileManager.default.fileExists(atPath: "\(dir)/\(file)"), "\(file)")
        }
    }

    @Test func anUnknownScenarioIsABadCommandLine() async throws {
        let run = try await Zcr.run(["profile", "--scenario", "seed-huge"])
        #expect(run.status == 64)
        #expect(run.stderr.contains("seed-large, seed-gather, small-many, echo-1k"))
    }
}
