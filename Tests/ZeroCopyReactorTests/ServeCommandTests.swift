// `zcr serve` as a real server, checked with clients we did not write against the library: Python's asyncio for
// echo, sink and blast. Runs the built zcr binary (next to this test bundle) in its own process.
import Foundation
import Glibc
import Testing
@testable import ZeroCopyReactor

@Suite(.timeLimit(.minutes(2))) struct ServeCommandTests {
    /// The zcr binary built beside the test bundle.
    static var zcrPath: String? { try? Zcr.path() }

    static let python = "/usr/bin/python3"

    /// Starts `zcr serve` with `arguments`; returns the process and the port from its first line.
    func serve(_ arguments: [String]) throws -> (ChildProcess, Int) {
        let zcr = try #require(Self.zcrPath, "zcr was not built next to the tests")
        let process = try ChildProcess([zcr, "serve", "--port", "0", "--threads", "2"] + arguments)
        let text = try process.readLine(timeout: 60)
        #expect(text.hasPrefix("listening on 127.0.0.1:"), "first line: \(text)")
        let port = Int(text.split(separator: ":")[1].split(separator: " ")[0]) ?? 0
        return (process, port)
    }

    /// Stops the server with SIGTERM and returns the rest of its output (its counters).
    func stop(_ process: ChildProcess) throws -> String {
        process.signal(SIGTERM)
        let end = try process.finish(timeout: 60)
        #expect(end.termination == .exited(0))
        return end.stdoutText
    }

    func python(_ script: String, _ port: Int) throws -> String {
        let out = try ChildProcess.run([Self.python, "-c", script, String(port)], timeout: 60)
        return out.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "needs Python 3 for the asyncio client"))
    func echoSinkAndBlastServePythonAsyncioClients() throws {
        let echoClient = """
        import asyncio, os, sys
        async def main():
            r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
            data = bytes((i * 7) % 256 for i in range(1 << 20))
            w.write(data); await w.drain()
            got = await r.readexactly(len(data))
            w.close()
            print("ok" if got == data else "mismatch")
        asyncio.run(main())
        """
        let (echo, echoPort) = try serve(["--mode", "echo"])
        #expect(try python(echoClient, echoPort) == "ok")
        #expect(try stop(echo).contains("shutting down"))

        let sinkClient = """
        import asyncio, sys
        async def main():
            r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
            for _ in range(10):
                w.write(b"x" * 1000000); await w.drain()
            w.write_eof(); await r.read()
            w.close(); print("sent")
        asyncio.run(main())
        """
        let (sink, sinkPort) = try serve(["--mode", "sink"])
        #expect(try python(sinkClient, sinkPort) == "sent")
        let sinkStats = try stop(sink)
        let readBytes = sinkStats.split(separator: "\n").compactMap { line -> Int? in
            guard let r = line.range(of: "read ") else { return nil }
            return Int(line[r.upperBound...].split(separator: " ")[0])
        }.reduce(0, +)
        #expect(readBytes == 10_000_000)

        let blastClient = """
        import asyncio, sys
        async def main():
            r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
            n, bad = 0, 0
            while True:
                b = await r.read(1 << 16)
                if not b: break
                if any(b[i] != (n + i) % 251 for i in range(0, len(b), 97)): bad += 1
                n += len(b)
            print(n, bad)
        asyncio.run(main())
        """
        let (blast, blastPort) = try serve(["--mode", "blast", "--blast-bytes", "5000000", "--slice-bytes", "64"])
        #expect(try python(blastClient, blastPort) == "5000000 0")
        #expect(try stop(blast).contains("copied 0 B"))
    }

    /// Bad option values are usage errors: exit 64, ArgumentParser's one "Error:" line (then its usage lines).
    @Test(arguments: [
        (["--threads", "0"], "--threads must be at least 1"),
        (["--threads", "1025"], "--threads must be at most 1024, not 1025"),
        (["--send-buffer", "0"], "--send-buffer must be at least 1, not 0"),
        (["--receive-buffer=-1"], "--receive-buffer must be at least 1, not -1"),
    ])
    func badArgumentsGetOneClearLineAndExit64(arguments: [String], message: String) throws {
        let zcr = try #require(Self.zcrPath)
        let run = try ChildProcess.run([zcr, "serve"] + arguments, timeout: 60)
        #expect(run.termination == .exited(64))
        let lines = run.stderrText.split(separator: "\n")
        #expect(lines.first == "Error: \(message)"[...])
        #expect(lines.filter { $0.hasPrefix("Error:") }.count == 1)
        #expect(run.stdoutText == "")
    }

    /// A failure at run time is not a usage error: one line on stderr, no usage text, exit 1.
    @Test func aPortInUseIsOneLineOnStderrAndExitOne() throws {
        let zcr = try #require(Self.zcrPath)
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(bound == 0 && listen(holder, 16) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(holder, $0, &length) }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))

        let run = try ChildProcess.run([zcr, "serve", "--port", "\(port)", "--threads", "2"], timeout: 60)
        #expect(run.termination == .exited(1))
        #expect(run.stderrText
            == "zcr serve: cannot listen on 127.0.0.1:\(port): bind: Address already in use (errno 98)\n")
        #expect(run.stdoutText == "")
    }

    /// `zcr serve | head -1`: the reader of stdout goes away after the first line. The lines printed at shutdown then
    /// fail with EPIPE, which must neither kill zcr (SIGPIPE, exit 141) nor change its exit status. Python's Popen
    /// gives the child SIGPIPE's default disposition, as a shell pipeline does.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "needs Python 3 for Popen"))
    func aClosedStdoutNeitherKillsServeNorChangesItsExitStatus() throws {
        let zcr = try #require(Self.zcrPath)
        let script = """
            import signal, subprocess, sys
            p = subprocess.Popen([sys.argv[1], "serve", "--port", "0", "--threads", "2"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            first = p.stdout.readline().decode().strip()
            p.stdout.close()
            p.send_signal(signal.SIGTERM)
            err = p.stderr.read().decode()
            print(p.wait(timeout=60)); print(first); print(repr(err))
            """
        let out = try ChildProcess.run([Self.python, "-c", script, zcr], timeout: 60)
        let lines = out.stdoutText.split(separator: "\n")
        #expect(lines.count == 3, "\(out.stdoutText)")
        #expect(lines.first == "0")
        #expect(lines.dropFirst().first?.hasPrefix("listening on 127.0.0.1:") == true)
        #expect(lines.last == "''")
    }

    /// SIGTERM starts a graceful drain (5 s by default) that a client which never reads would fill to the end; a
    /// second SIGTERM aborts that connection at once: zcr exits 0 within a deadline far below 5 s, and the client
    /// sees a reset, not an end of stream.
    @Test func aSecondSignalCutsTheDrainShortAndResetsTheConnection() throws {
        // Small kernel buffers on both sides (and no autotuning), so that they fill with far less than the 64 KiB
        // blast queues before its first flush: the drain then has bytes left that can never go out.
        let (server, port) = try serve(["--mode", "blast", "--blast-bytes", "1073741824", "--send-buffer", "4096"])
        let peer = try RawPeer(connectingTo: try SocketAddress(host: "127.0.0.1", port: port), receiveBuffer: 4096)
        // The first bytes prove the blast is under way; from here on the peer reads nothing until the end.
        #expect(peer.read(exactly: 1000).count == 1000)
        server.signal(SIGTERM)
        #expect(try server.readLine(timeout: 30) == "signal 15: shutting down")
        let second = EventLoop.now()
        server.signal(SIGTERM)
        let end = try server.finish(timeout: 3)
        #expect(EventLoop.now() - second < 3_000_000_000)
        #expect(end.termination == .exited(0))
        #expect(end.stdoutText.hasPrefix("second signal 15: aborting 1 connection(s)\n"), "\(end.stdoutText)")

        // What the kernel had buffered for the peer, then ECONNRESET (a graceful close would end with recv == 0).
        #expect(peer.readToEnd().end == ECONNRESET)
    }

    /// Linux < 5.11 as strace shows it to zcr: every epoll_pwait2 fails with ENOSYS (injection only applies to traced
    /// calls, so the trace is epoll_pwait2 and its lines land on stderr). The loops fall back to epoll_wait after one
    /// failed call each at most, echo exact bytes, and SIGTERM (to zcr, not to strace) ends them cleanly.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/strace"), "needs strace for ENOSYS"))
    func serveRunsOnEpollWaitWhenEpollPwait2IsMissing() throws {
        let zcr = try #require(Self.zcrPath)
        let strace = try ChildProcess([
            "/usr/bin/strace", "-f", "-qq", "-e", "trace=epoll_pwait2", "-e", "inject=epoll_pwait2:error=ENOSYS",
            zcr, "serve", "--port", "0", "--threads", "2",
        ])
        let line = try strace.readLine(timeout: 60)
        #expect(line.hasPrefix("listening on 127.0.0.1:"), "first line: \(line)")
        let port = try #require(Int(line.split(separator: ":")[1].split(separator: " ")[0]))
        // zcr is strace's only child (strace forks it, then traces it).
        let children = try String(contentsOfFile: "/proc/\(strace.pid)/task/\(strace.pid)/children", encoding: .utf8)
        let zcrPID = try #require(Int32(children.trimmingCharacters(in: .whitespacesAndNewlines)), "\(children)")

        var random = TestRandom(seed: 5)
        let data = random.bytes(300_000)
        let peer = try RawPeer(connectingTo: try SocketAddress(host: "127.0.0.1", port: port))
        let reader = Box<[UInt8]>()
        runThread { reader.set(peer.read(exactly: data.count)) }
        peer.send(data)
        #expect(reader.wait() == data)

        #expect(kill(zcrPID, SIGTERM) == 0)
        let end = try strace.finish(timeout: 60)
        #expect(end.termination == .exited(0))  // strace exits with its tracee's status
        #expect(end.stdoutText.hasPrefix("signal 15: shutting down\n"))
        #expect(end.stdoutText.contains("read 300000 B, wrote 300000 B"))
        // Two loops' calls can interleave ("epoll_pwait2(... <unfinished ...>", then "<... epoll_pwait2 resumed>"):
        // count the calls where they start, and check every result where it is printed.
        let lines = end.stderrText.split(separator: "\n")
        let calls = lines.filter { $0.contains("epoll_pwait2(") }
        let results = lines.filter { $0.contains("epoll_pwait2") && $0.contains(") = ") }
        #expect((1...2).contains(calls.count), "\(end.stderrText)")
        #expect(results.count == calls.count, "\(end.stderrText)")
        let injected = " = -1 ENOSYS (Function not implemented) (INJECTED)"
        #expect(results.allSatisfy { $0.hasSuffix(injected) }, "\(end.stderrText)")
    }

    /// With a send buffer far smaller than what it sends (the library's own tests check that the size reaches the
    /// socket), blast still delivers every byte through many partial writes.
    @Test func aSmallSendBufferStillDeliversEveryBlastByte() throws {
        let (server, port) = try serve(["--mode", "blast", "--blast-bytes", "1000000", "--send-buffer", "4096"])
        let out = try python("""
            import socket, sys
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            n = 0
            while True:
                b = s.recv(65536)
                if not b: break
                n += len(b)
            print(n)
            """, port)
        #expect(out == "1000000")
        #expect(try stop(server).contains("wrote 1000000 B"))
    }

    /// `--mode file` sends the file byte for byte to a client we did not write (Python's socket module, which
    /// hashes what it reads and says how the stream ended), with sendfile and with the mapping; the counters say
    /// which path sent it.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "needs Python 3"),
          arguments: ["sendfile", "mmap"])
    func fileModeSendsTheFileByteForByte(io: String) throws {
        let file = TempFile(count: 5 * 1024 * 1024 + 3, seed: 1)
        let (server, port) = try serve(["--mode", "file", "--file", file.path, "--file-io", io])
        let out = try python("""
            import hashlib, socket, sys
            h = hashlib.sha256()
            for _ in range(3):
                s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                while True:
                    b = s.recv(1 << 20)
                    if not b: break
                    h.update(b)
                s.close()
            print(h.hexdigest())
            """, port)
        let expected = try python("""
            import hashlib, sys
            h = hashlib.sha256()
            for _ in range(3): h.update(open("\(file.path)", "rb").read())
            print(h.hexdigest())
            """, port)
        #expect(out == expected)
        let summary = try stop(server)
        #expect(summary.contains("sendfile ") == (io == "sendfile"), "\(summary)")
    }

    @Test func fileModeNeedsAReadableRegularFile() throws {
        let zcr = try #require(Self.zcrPath)
        let missing = try ChildProcess.run([zcr, "serve", "--port", "0", "--mode", "file"], timeout: 30)
        #expect(missing.termination == .exited(64))
        #expect(missing.stderrText.contains("--mode file needs --file PATH"))
        let directory = try ChildProcess.run([zcr, "serve", "--port", "0", "--mode", "file", "--file", "/tmp"], timeout: 30)
        #expect(directory.termination == .exited(1))
        #expect(directory.stderrText.contains("zcr serve: --file /tmp: invalid argument: /tmp is not a regular file"))
    }
}
