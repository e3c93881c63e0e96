// The profiling endpoint in this test process (which is not linked with jemalloc and has no memcpy counter): the
// socket's mode, a live path refused, a stale one replaced, something else left alone, the protocol, and figures
// this process cannot measure reported as unavailable (null), never as numbers.
import Foundation
import Glibc
import Testing
import ZeroCopyReactor

@testable import ZeroCopyProfiler

@Suite(.serialized) struct ProfilingEndpointTests {
    static func pool() throws -> ReactorPool {
        var configuration = ReactorConfiguration(loops: 2)
        configuration.metricsIntervalNanos = nil
        configuration.verifyIovecs = true
        return try ReactorPool(configuration: configuration)
    }

    @Test func theSocketIsCreatedWithMode0600() throws {
        let path = temporaryPath("mode.sock")
        let pool = try Self.pool()
        defer { pool.shutdown() }
        let oldMask = umask(0)  // the widest umask: the mode must not come from it
        defer { umask(oldMask) }
        let endpoint = try ProfilingEndpoint(pool: pool, path: path)
        defer { endpoint.close() }
        var st = stat()
        #expect(lstat(path, &st) == 0)
        #expect(st.st_mode & S_IFMT == S_IFSOCK)
        #expect(st.st_mode & 0o7777 == 0o600)
    }

    @Test func aLivePathIsRefusedAndKeepsServing() throws {
        let path = temporaryPath("live.sock")
        let pool = try Self.pool()
        defer { pool.shutdown() }
        let first = try ProfilingEndpoint(pool: pool, path: path)
        defer { first.close() }
        #expect(throws: ProfilingEndpointError.inUse(path: path)) {
            _ = try ProfilingEndpoint(pool: pool, path: path)
        }
        let snapshot = try EndpointClient(path: path).snapshot()
        #expect(snapshot.pid == Int(getpid()))
        #expect(snapshot.meter.loops.count == 2)
    }

    @Test func aStaleSocketIsReplaced() throws {
        let path = temporaryPath("stale.sock")
        // A socket bound and closed without unlinking: what a server that died leaves behind.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8))
            raw[path.utf8.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0)
        close(fd)
        #expect(throws: ProfileError.self) { _ = try EndpointClient(path: path) }  // refused: stale

        let pool = try Self.pool()
        defer { pool.shutdown() }
        let endpoint = try ProfilingEndpoint(pool: pool, path: path)
        #expect(try EndpointClient(path: path).snapshot().meter.loops.count == 2)
        endpoint.close()
        #expect(access(path, F_OK) != 0, "close removes the socket")
    }

    @Test func somethingThatIsNotASocketIsLeftAlone() throws {
        let path = temporaryPath("file.sock")
        #expect(FileManager.default.createFile(atPath: path, contents: Data("keep".utf8)))
        defer { unlink(path) }
        let pool = try Self.pool()
        defer { pool.shutdown() }
        #expect(throws: ProfilingEndpointError.notASocket(path: path)) {
            _ = try ProfilingEndpoint(pool: pool, path: path)
        }
        #expect(FileManager.default.contents(atPath: path) == Data("keep".utf8))
    }

    @Test func eachRequestLineGetsOneLineOfJSON() throws {
        let path = temporaryPath("protocol.sock")
        let pool = try Self.pool()
        defer { pool.shutdown() }
        let endpoint = try ProfilingEndpoint(pool: pool, path: path)
        defer { endpoint.close() }
        let client = try EndpointClient(path: path)
        let unknown = try client.request("flush")
        #expect(unknown == #"{"error":"unknown request flush: send snapshot or reset-peak"}"#)
        let answer = try client.request("snapshot")
        #expect(!answer.contains("\n"))
        let json = try JSONObject(Data(answer.utf8))
        #expect(json["endpoint_version"].int == 1)
        #expect(json["verify_iovecs"].bool == true)
        #expect(json["reactor_threads"].array.map { $0["loop"].int } == [0, 1])
        #expect(json["reactor_threads"][0]["thread_id"].int != Int(getpid()))
        #expect(try client.request("reset-peak").hasPrefix(#"{"reset_peak":"#))
    }

    /// This test process is not linked with jemalloc (only zcr is) and has no memcpy counter: every figure that
    /// needs them is null on the wire, unavailable in the report, and the verdict cannot be yes.
    @Test func withoutJemallocTheFiguresAreUnavailableNotNumbers() throws {
        let path = temporaryPath("nojemalloc.sock")
        let pool = try Self.pool()
        defer { pool.shutdown() }
        let endpoint = try ProfilingEndpoint(pool: pool, path: path)
        defer { endpoint.close() }
        let raw = try EndpointClient(path: path).request("snapshot")
        let json = try JSONObject(Data(raw.utf8))
        if json["allocator"]["jemalloc"].bool == true {
            try Test.cancel("skipped: this test process runs on jemalloc (preloaded)")
        }
        #expect(json["allocator"]["name"].string == "unknown (not jemalloc)")
        #expect(json["memcpy_counter"]["present"].bool == false)
        #expect(json["process"]["heap"].isNull)
        #expect(json["process"]["rss_bytes"].int ?? 0 > 0, "RSS is measured without jemalloc")
        for t in json["reactor_threads"].array {
            for key in ["bytes_allocated", "bytes_deallocated", "allocations", "memcpy_bytes", "memcpy_calls"] {
                #expect(t[key].isNull, "\(key) must be null, not \(String(describing: t[key].value))")
            }
            #expect(t["bytes_sent"].int == 0)
        }

        var options = AttachOptions(path: path)
        options.durationSeconds = 1
        options.warmupSeconds = 0
        let report = try AttachRunner.run(options)
        #expect(report.window.reactorBytesAllocated == nil)
        #expect(report.window.reactorMemcpyBytes == nil)
        #expect(!report.zeroCopy)
        let out = try JSONObject(Data(report.json().utf8))
        #expect(out["scenario"].string == "attach")
        #expect(out["attached"]["pid"].int == Int(getpid()))
        #expect(out["reactor_bytes_allocated"].isNull)
        #expect(out["memcpy_bytes"].isNull)
        #expect(out["allocated_bytes_per_byte_sent"].isNull)
        #expect(out["writes"].isNull, "an attached server's write calls are not known")
        #expect(report.html().contains("unavailable"))
        // Sampling fits the window: a 1 s window is sampled every 17 ms, 60 times.
        let inWindow = report.timeline.filter { $0.phase == .window }
        #expect(inWindow.count >= 50, "\(inWindow.count) samples in a 1 s window")
    }

    @Test func everySnapshotFieldIsDocumented() throws {
        let path = temporaryPath("docs.sock")
        let pool = try Self.pool()
        defer { pool.shutdown() }
        let endpoint = try ProfilingEndpoint(pool: pool, path: path)
        defer { endpoint.close() }
        let raw = try EndpointClient(path: path).request("snapshot")
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/profile.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let keys = allKeys(try JSONValue.parse(raw))
        #expect(keys.count > 40)
        let undocumented = keys.filter { !text.contains("`\($0)`") }
        #expect(undocumented.isEmpty, "not in docs/profile.md: \(undocumented)")
    }

    @Test func attachingWhereNoEndpointIsSaysSo() throws {
        let path = temporaryPath("none.sock")
        #expect(throws: ProfileError.attach("no profiling endpoint at \(path) (start the server with --profile-socket \(path))")) {
            _ = try EndpointClient(path: path)
        }
    }
}
