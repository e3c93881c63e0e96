// Each example runs here against plain sockets: fan-out delivers one message to every client, the file server sends
// the exact file, the proxy forwards exact bytes both ways.
import FanOut
import FileServer
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

    @Test func theFileServerSendsTheExactFileFromAMemoryMap() throws {
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
        let copied = server.pool.counters().reduce(0) { $0 + $1.bytesCopied }
        #expect(copied == 0)
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
