// `zcr profile --attach` against `zcr serve --profile-socket` under `zcr load`, all three the built binaries: the
// zero-copy echo server passes, and each copy control is caught from outside by the check built for it (allocate by
// the allocation figure; reuse, which allocates nothing, by the iovec and memcpy checks only).
import Foundation
import Glibc
import Testing
import ZeroCopyProfiler

@Suite(.serialized, .timeLimit(.minutes(2))) struct AttachEndToEndTests {
    /// Starts the server, puts load on it until traffic flows, attaches for a short window, and stops both.
    static func attach(serve: [String], load: [String] = ["--message-bytes", "4k"]) async throws -> (ZcrRun, JSONObject) {
        let zcr = try Zcr.path()
        let socket = temporaryPath("attach.sock")
        let server = try ChildProcess(
            [zcr, "serve", "--port", "0", "--threads", "2", "--profile-socket", socket] + serve)
        defer {
            server.signal(SIGINT)
            _ = try? server.finish(timeout: 20)
        }
        let first = try server.readLine(timeout: 60)
        #expect(first.hasPrefix("listening on 127.0.0.1:"), "first line: \(first)")
        let address = String(first.dropFirst("listening on ".count).prefix { $0 != " " })
        #expect(try server.readLine(timeout: 10) == "profiling endpoint at \(socket)")
        let generator = try ChildProcess(
            [zcr, "load", "--target", address, "--connections", "20", "--duration", "30s"] + load)
        defer { generator.kill() }  // its own report is not the point here
        _ = try generator.readLine(timeout: 30)  // the first progress line: connected, and traffic flows
        return try await Zcr.profile(
            ["--attach", socket, "--duration", "1", "--warmup", "0.2", "--max-allocated-bytes-per-byte",
             "\(Build.allocatedPerByteLimit)"])
    }

    static func failed(_ json: JSONObject) -> [String] {
        json["verdict_checks"].array.filter { $0["passed"].bool == false }.compactMap { $0["name"].string }
    }

    @Test func theZeroCopyEchoServerPasses() async throws {
        let (run, json) = try await Self.attach(serve: ["--mode", "echo"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(json["scenario"].string == "attach")
        #expect(json["attached"]["verify_iovecs"].bool == true)
        #expect((json["bytes_sent"].int ?? 0) > 1 << 20)
        #expect(json["foreign_iovecs"].int == 0)
        #expect((json["verified_iovecs"].int ?? 0) > 0)
        #expect(json["timeline"].array.filter { $0["phase"].string == "window" }.count >= 50)
        try Zcr.requireJemalloc(json)  // ZCR_JEMALLOC=0 builds leave out the memcpy counter too
        #expect(json["memcpy_counter"]["present"].bool == true, "zcr carries the memcpy counter")
        #expect((json["memcpy_bytes_per_byte_sent"].double ?? 1) < 0.01)
        #expect(json["zero_copy"].bool == true, "\(run.stdout)")
    }

    @Test func theAllocateControlIsCaughtByTheAllocationFigure() async throws {
        let (run, json) = try await Self.attach(serve: ["--mode", "echo", "--copy-control", "allocate"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(json["zero_copy"].bool == false)
        #expect(json["attached"]["copy_control"].string == "allocate")
        #expect(run.stdout.contains("zero copy NO (caught by"))
        #expect(Self.failed(json).contains("foreign_iovecs"))
        try Zcr.requireJemalloc(json)
        #expect(Self.failed(json).contains("memcpy_bytes_per_byte_sent"))
        #expect(Self.failed(json).contains("allocated_bytes_per_byte_sent"))
        #expect((json["allocated_bytes_per_byte_sent"].double ?? 0) >= 0.9)
    }

    @Test func theReuseControlAllocatesNothingAndIsCaughtByTheIovecAndMemcpyChecks() async throws {
        let (run, json) = try await Self.attach(serve: ["--mode", "echo", "--copy-control", "reuse"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(json["zero_copy"].bool == false)
        #expect(json["attached"]["copy_control"].string == "reuse")
        #expect(json["verified_iovecs"].int == 0)
        #expect((json["foreign_iovecs"].int ?? 0) > 0)
        try Zcr.requireJemalloc(json)
        #expect((json["memcpy_bytes_per_byte_sent"].double ?? 0) >= 0.9)
        #expect(Self.failed(json) == ["foreign_iovecs", "memcpy_bytes_per_byte_sent"])
        #expect((json["allocated_bytes_per_byte_sent"].double ?? 1) < Build.allocatedPerByteLimit)
    }

    @Test func theBlastReuseControlIsCaughtToo() async throws {
        let (_, json) = try await Self.attach(serve: ["--mode", "blast", "--copy-control", "reuse"], load: ["--mode", "blast", "--until-eof"])
        #expect(json["zero_copy"].bool == false)
        #expect(Self.failed(json).contains("foreign_iovecs"))
        try Zcr.requireJemalloc(json)
        #expect(Self.failed(json).contains("memcpy_bytes_per_byte_sent"))
    }

    @Test func zcrLoadPutsTheServersVerdictAndAllocationsIntoItsReport() async throws {
        let zcr = try Zcr.path()
        let socket = temporaryPath("load.sock")
        let server = try ChildProcess(
            [zcr, "serve", "--port", "0", "--threads", "2", "--profile-socket", socket, "--copy-control", "reuse"])
        defer {
            server.signal(SIGINT)
            _ = try? server.finish(timeout: 20)
        }
        let first = try server.readLine(timeout: 60)
        let address = String(first.dropFirst("listening on ".count).prefix { $0 != " " })
        _ = try server.readLine(timeout: 10)
        let file = temporaryPath("load.json")
        defer { unlink(file) }
        let run = try await Zcr.run([
            "load", "--target", address, "--connections", "20", "--duration", "1s", "--message-bytes", "4k",
            "--quiet", "--profile", socket, "--json", file,
        ])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("server (\(socket)): zero copy NO (caught by foreign_iovecs"), "\(run.stdout)")
        let json = try JSONObject(try #require(FileManager.default.contents(atPath: file)))
        #expect(json["server_profile"]["scenario"].string == "attach")
        #expect(json["server_profile"]["zero_copy"].bool == false)
        #expect(json["server_profile"]["attached"]["copy_control"].string == "reuse")
        #expect((json["server_profile"]["bytes_sent"].int ?? 0) > 0)
        #expect(json["server_profile"]["allocated_bytes_per_byte_sent"].exists)

        let missing = try await Zcr.run(["load", "--target", address, "--profile", socket + ".absent"])
        #expect(missing.status == 2)
        #expect(missing.stderrLines.count == 1)
        #expect(missing.stderr.contains("no profiling endpoint at \(socket).absent"))
    }

    /// Snapshots are served from the endpoint's own thread: reading 200 of them wakes no loop, runs no loop
    /// iteration and allocates nothing on the reactor threads.
    @Test func servingSnapshotsPutsNothingOnTheLoops() async throws {
        let zcr = try Zcr.path()
        let socket = temporaryPath("idle.sock")
        let server = try ChildProcess([zcr, "serve", "--port", "0", "--threads", "2", "--profile-socket", socket])
        defer {
            server.signal(SIGINT)
            _ = try? server.finish(timeout: 20)
        }
        _ = try server.readLine(timeout: 60)
        _ = try server.readLine(timeout: 10)
        let (before, after) = try await onThread { () throws -> (EndpointSnapshot, EndpointSnapshot) in
            let client = try EndpointClient(path: socket)
            let before = try client.snapshot()
            for _ in 0..<200 { _ = try client.snapshot() }
            return (before, try client.snapshot())
        }
        #expect(after.meter.nanos > before.meter.nanos)
        for (a, b) in zip(before.meter.loops, after.meter.loops) {
            #expect(b.counters.iterations == a.counters.iterations, "loop \(a.loop) ran")
            #expect(b.counters.wakeups == a.counters.wakeups, "loop \(a.loop) was woken")
            #expect(b.allocatedBytes == a.allocatedBytes, "loop \(a.loop) allocated")
            #expect(b.memcpy == a.memcpy)
        }
    }

    @Test func aCopyControlNeedsAModeThatWrites() async throws {
        let run = try await Zcr.run(["serve", "--mode", "sink", "--copy-control", "reuse"])
        #expect(run.status == 64)
        #expect(run.stderr.contains("--copy-control is for --mode echo and blast, not sink"))
    }
}
