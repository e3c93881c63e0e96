// `zcr serve` as a real server, checked with clients we did not write against the library: Python's asyncio for
// echo, sink and blast. Runs the built zcr binary (next to this test bundle) in its own process.
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct ServeCommandTests {
    /// The zcr binary built beside the test bundle.
    static var zcrPath: String? { try? Zcr.path() }

    static let python = "/usr/bin/python3"

    /// Starts `zcr serve` with `arguments`, returns the process, its port and its output pipe.
    func serve(_ arguments: [String]) throws -> (Process, Int, Pipe) {
        let zcr = try #require(Self.zcrPath, "zcr was not built next to the tests")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: zcr)
        process.arguments = ["serve", "--port", "0", "--threads", "2"] + arguments
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        #expect(text.hasPrefix("listening on 127.0.0.1:"), "first line: \(text)")
        let port = Int(text.split(separator: ":")[1].split(separator: " ")[0]) ?? 0
        return (process, port, out)
    }

    /// Stops the server with SIGTERM and returns the rest of its output (its counters).
    func stop(_ process: Process, _ out: Pipe) -> String {
        process.terminate()
        process.waitUntilExit()
        return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    func python(_ script: String, _ port: Int) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.python)
        p.arguments = ["-c", script, String(port)]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
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
        let (echo, echoPort, echoOut) = try serve(["--mode", "echo"])
        #expect(try python(echoClient, echoPort) == "ok")
        #expect(stop(echo, echoOut).contains("shutting down"))

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
        let (sink, sinkPort, sinkOut) = try serve(["--mode", "sink"])
        #expect(try python(sinkClient, sinkPort) == "sent")
        let sinkStats = stop(sink, sinkOut)
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
        let (blast, blastPort, blastOut) = try serve(["--mode", "blast", "--blast-bytes", "5000000", "--slice-bytes", "64"])
        #expect(try python(blastClient, blastPort) == "5000000 0")
        #expect(stop(blast, blastOut).contains("copied 0 B"))
    }

    @Test func badArgumentsGetOneClearLineAndANonZeroExit() throws {
        let zcr = try #require(Self.zcrPath)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: zcr)
        p.arguments = ["serve", "--threads", "0"]
        let err = Pipe()
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus != 0)
        #expect(text.contains("--threads must be at least 1"))
    }
}
