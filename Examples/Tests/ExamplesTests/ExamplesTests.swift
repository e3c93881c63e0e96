// Each example runs here against plain sockets: fan-out delivers one message to every client, the file server sends
// the exact file, the proxy forwards exact bytes both ways.
import FanOut
import FileServer
import KeyValue
import Glibc
import Proxy
import Testing
import ZeroCopyReactor

/// A blocking client socket.
final class Client: @unchecked Sendable {
    let fd: Int32
    init(_ address: SocketAddress) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(address.port).bigEndian
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { throw ReactorError.system(SystemError(errno: errno, call: "connect")) }
    }
    deinit { close(fd) }
    func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
    func read(_ limit: Int = Int.max) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, limit - out.count), 0) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return out
    }
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }
}

@Suite struct ExamplesTests {
    @Test func fanOutSendsEachMessageToEveryClient() throws {
        let server = try FanOutServer(loops: 2)
        defer { server.shutdown() }
        let address = try server.start()
        let clients = try (0..<20).map { _ in try Client(address) }
        // Every client is registered once a round trip through it works: send a probe and read it back.
        for (i, c) in clients.enumerated() {
            c.send([UInt8(i)])
            while true {
                let got = c.read(1)
                #expect(got.count == 1)
                if got == [UInt8(i)] || got.isEmpty { break }
            }
        }
        #expect(server.clientCount == 20)
        // Drain probes other clients sent before this one saw them, then publish one message.
        let message = Array("price 101.25\n".utf8)
        clients[0].send(message)
        for c in clients {
            var stream: [UInt8] = []
            while !stream.ends(with: message) {
                let got = c.read(1)
                if got.isEmpty { break }
                stream += got
            }
            #expect(stream.ends(with: message))
        }
    }

    @Test func theFileServerSendsTheExactFileWithSendfile() throws {
        let path = "/tmp/zcr-example-\(getpid()).bin"
        let content = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
        let f = fopen(path, "w")
        _ = content.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
        defer { unlink(path) }
        let server = try FileServer(path: path, loops: 2, chunk: 256 * 1024)
        defer { server.shutdown() }
        let address = try server.start()
        for _ in 0..<3 {
            #expect(try Client(address).read() == content)
        }
        let counters = server.pool.counters()
        #expect(counters.reduce(0) { $0 + $1.bytesCopied } == 0)
        #expect(counters.reduce(0) { $0 + $1.write.sendfileBytes } == 3 * content.count)
    }

    @Test func theProxyForwardsBothWaysWithoutCopying() throws {
        let upstream = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        defer { upstream.shutdown() }
        let upstreamAddress = try upstream.listen(host: "127.0.0.1", port: 0) { _ in EchoHandler() }
        let proxy = try Proxy(upstream: upstreamAddress, loops: 2)
        defer { proxy.shutdown() }
        let address = try proxy.start()
        let data = (0..<2_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let client = try Client(address)
        let reader = ReaderThread { client.read(data.count) }
        client.send(data)
        #expect(reader.result() == data)
        client.shutdownWrite()
        #expect(client.read().isEmpty)  // the half-close travelled upstream and the echo server closed back
        let copied = proxy.pool.counters().reduce(0) { $0 + $1.bytesCopied }
        #expect(copied == 0)
    }
}

extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}

/// Runs a blocking read on its own thread.
final class ReaderThread: @unchecked Sendable {
    private var value: [UInt8] = []
    private var thread = pthread_t()
    private let body: () -> [UInt8]
    init(_ body: @escaping () -> [UInt8]) {
        self.body = body
        let arg = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { arg in
            let me = Unmanaged<ReaderThread>.fromOpaque(arg!).takeRetainedValue()
            me.value = me.body()
            return nil
        }, arg)
    }
    func result() -> [UInt8] {
        pthread_join(thread, nil)
        return value
    }
}

/// The async example: the protocol over a plain socket, a line over the limit, and a drain during a reply.
@Suite(.timeLimit(.minutes(1))) struct KeyValueExampleTests {
    /// Blocking socket work on a thread of its own, off Swift concurrency's few threads.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            let box = Unmanaged.passRetained(Job { c.resume(with: Result(catching: body)) })
            var tid = pthread_t()
            pthread_create(&tid, nil, { Unmanaged<Job>.fromOpaque($0!).takeRetainedValue().run(); return nil },
                           box.toOpaque())
            pthread_detach(tid)
        }
    }
    final class Job { let run: () -> Void; init(_ run: @escaping () -> Void) { self.run = run } }

    func started(_ server: KeyValueServer) async throws -> (Task<Void, any Error>, SocketAddress) {
        let (stream, sink) = AsyncStream<SocketAddress>.makeStream()
        let task = Task { try await server.run(port: 0) { sink.yield($0) } }
        var iterator = stream.makeAsyncIterator()
        return (task, await iterator.next()!)
    }

    @Test func theProtocolWorksAndALongLineIsReset() async throws {
        let server = try KeyValueServer(loops: 1)
        let (task, address) = try await started(server)
        let replies = try await blocking { () throws -> [String] in
            let c = try Client(address)
            c.send(Array("SET colour blue\nGET colour\nGET shape\n".utf8))
            let first = String(decoding: c.read(3 + 5 + 10), as: UTF8.self)
            c.send(Array("STREAM 200000\n".utf8))
            let streamed = c.read(200_000)
            let ok = streamed.count == 200_000 && streamed.indices.allSatisfy { streamed[$0] == UInt8($0 % 251) }
            c.send(Array("QUIT\n".utf8))
            let bye = String(decoding: c.read(), as: UTF8.self)
            // A line longer than the limit: the connection is reset, not left to grow.
            let long = try Client(address)
            long.send([UInt8](repeating: UInt8(ascii: "x"), count: KeyValueServer.maxLine + 10))
            let rest = long.read()
            return [first, ok ? "streamed" : "bad stream", bye, rest.isEmpty && errno == ECONNRESET ? "reset" : "\(errno)"]
        }
        #expect(replies == ["OK\nblue\nNOT_FOUND\n", "streamed", "BYE\n", "reset"])
        await server.shutdown()
        _ = try? await task.value
    }

    @Test func aDrainEndsIdleConnectionsCleanlyAndResetsACutStream() async throws {
        let server = try KeyValueServer(loops: 1)
        let (task, address) = try await started(server)
        let (idle, streaming) = try await blocking { () throws -> (Client, Client) in
            let idle = try Client(address)
            idle.send(Array("SET a b\n".utf8))
            _ = idle.read(3)
            var size: Int32 = 4096
            let streaming = try Client(address)
            setsockopt(streaming.fd, SOL_SOCKET, SO_RCVBUF, &size, 4)
            streaming.send(Array("STREAM 1000000000\n".utf8))
            _ = streaming.read(1)
            return (idle, streaming)
        }
        await server.shutdown(timeout: .milliseconds(300))
        _ = try? await task.value
        let (idleEnd, streamEnd) = try await blocking { () -> (Int32, Int32) in
            func end(_ c: Client) -> Int32 {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
                    if n == 0 { return 0 }
                    if n < 0 { return errno }
                }
            }
            return (end(idle), end(streaming))
        }
        #expect(idleEnd == 0)  // nothing was owed: a clean end
        #expect(streamEnd == ECONNRESET)  // a reply cut by the drain: a reset
    }
}
