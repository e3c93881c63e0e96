// A line-protocol key-value server on the async face, the shape of server the library's users write:
//   SET key value   -> OK            GET key  -> the value, or NOT_FOUND
//   STREAM n        -> n bytes of a pattern, sent from one preallocated buffer (no copy, whatever n is)
//   QUIT            -> BYE, then a graceful close
// Lines are frames (`connection.frames(.lines(), maxFrameBytes:)`): a line inside one read is a slice of the read
// buffer; a longer line than the limit resets the connection. Each connection has an idle timeout, its peer's
// address is in the log line of every failure, and `shutdown(timeout:)` drains: idle connections end cleanly,
// a STREAM still going at the deadline is reset (never a FIN after part of it).
import Synchronization
import ZeroCopyReactor

public final class KeyValueServer: Sendable {
    public let pool: ReactorPool
    private let store = Mutex<[String: [UInt8]]>([:])
    private let idleTimeout: Duration
    /// One buffer of the STREAM pattern (byte i is i % 251), cut into slices for every reply.
    private let pattern: BlastPayload
    public static let maxLine = 4096

    public init(loops: Int = 2, idleTimeout: Duration = .seconds(60)) throws {
        pool = try ReactorPool(configuration: ReactorConfiguration(loops: loops))
        self.idleTimeout = idleTimeout
        pattern = BlastPayload(sliceBytes: 64 * 1024)
    }

    /// Serves until the pool shuts down (or the task is cancelled).
    public func run(host: String = "127.0.0.1", port: Int = 7400,
                    onListening: @Sendable (SocketAddress) -> Void = { _ in }) async throws {
        try await pool.serve(host: host, port: port, onListening: onListening) { [self] connection in
            connection.setTimeouts(ConnectionTimeouts(idle: idleTimeout))
            for try await line in connection.frames(.lines(), maxFrameBytes: Self.maxLine) {
                if try await answer(line, on: connection) == false { return }
            }
        }
    }

    /// Stops accepting, lets running replies finish for up to `timeout`, then resets what is left.
    public func shutdown(timeout: Duration = .seconds(5)) async {
        await pool.shutdownGracefully(timeoutNanos: UInt64(timeout.components.seconds) * 1_000_000_000
            + UInt64(timeout.components.attoseconds / 1_000_000_000))
    }

    /// Answers one command; false when the connection should end (QUIT).
    private func answer(_ line: Slice, on connection: AsyncConnection) async throws -> Bool {
        let words = line.bytes.split(separator: UInt8(ascii: " "), maxSplits: 2, omittingEmptySubsequences: true)
        let command = words.first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        switch (command, words.count) {
        case ("SET", 3):
            let key = String(decoding: words[1], as: UTF8.self)
            let value = Array(words[2])
            store.withLock { $0[key] = value }
            try await connection.write(Slice(Array("OK\n".utf8)))
        case ("GET", 2):
            let key = String(decoding: words[1], as: UTF8.self)
            if let value = store.withLock({ $0[key] }) {
                var message = OutboundMessage()  // the value and its newline in one atomic append
                message.append(Slice(value))
                message.append(Slice(Array("\n".utf8)))
                try await connection.write(message)
            } else {
                try await connection.write(Slice(Array("NOT_FOUND\n".utf8)))
            }
        case ("STREAM", 2):
            guard let total = Int(String(decoding: words[1], as: UTF8.self)), total >= 0 else { fallthrough }
            var sent = 0
            while sent < total {
                let n = min(pattern.sliceBytes, total - sent)
                try await connection.write(pattern.slice(streamOffset: sent, count: n))
                sent += n
            }
        case ("QUIT", 1):
            try await connection.write(Slice(Array("BYE\n".utf8)))
            return false
        default:
            try await connection.write(Slice(Array("ERR\n".utf8)))
        }
        return true
    }
}
