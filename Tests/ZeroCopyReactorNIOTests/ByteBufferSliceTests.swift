// A ByteBuffer written through the reactor: exact bytes, the same memory (no copy), and a caller's later mutation
// does not change what was queued.
import Glibc
import NIOCore
import Testing
import ZeroCopyReactor
import ZeroCopyReactorNIO

@Suite struct ByteBufferSliceTests {
    @Test func aSliceOfAByteBufferPointsAtTheBuffersOwnBytes() {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        buffer.writeBytes([1, 2, 3, 4, 5])
        buffer.moveReaderIndex(forwardBy: 1)
        let slice = Slice(buffer)
        #expect(Array(slice.bytes) == [2, 3, 4, 5])
        let same = buffer.withUnsafeReadableBytes { $0.baseAddress == slice.bytes.baseAddress }
        #expect(same)
        // Mutating the caller's buffer now copies on write: the slice still sees the queued bytes.
        buffer.setBytes([9, 9], at: buffer.readerIndex)
        #expect(Array(slice.bytes) == [2, 3, 4, 5])
    }

    @Test func byteBuffersGoOutOnTheWireUnchanged() throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        defer { pool.shutdown() }
        var buffer = ByteBufferAllocator().buffer(capacity: 100_000)
        buffer.writeBytes((0..<100_000).map { UInt8(truncatingIfNeeded: $0) })
        let payload = buffer
        let address = try pool.listen(host: "127.0.0.1", port: 0) { _ in Sender(payload) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(address.port).bigEndian
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(rc == 0)
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
        }
        #expect(received == Array(buffer.readableBytesView))
    }
}

final class Sender: ConnectionHandler {
    let buffer: ByteBuffer
    init(_ buffer: ByteBuffer) { self.buffer = buffer }
    func connectionOpened(_ connection: Connection) {
        try? connection.write(buffer)
        connection.close()
    }
}
