// The three servers `zcr serve` runs, usable by embedders too: echo (writes back the very buffer it read into),
// sink (reads and discards) and blast (sends a byte pattern cut from one shared payload, then closes).

/// What a built-in server does with each connection.
public enum ServeMode: String, Sendable, CaseIterable {
    case echo, sink, blast
}

/// The stream `blast` sends: byte i is `i % 251`, as slices cut from ONE payload of `sliceBytes + 251` bytes,
/// so any number of connections cost no more payload memory than one.
public final class BlastPayload: @unchecked Sendable {
    public static let period = 251
    public let sliceBytes: Int
    private let storage: UnsafeMutableRawBufferPointer

    public init(sliceBytes: Int) {
        precondition(sliceBytes >= 1)
        self.sliceBytes = sliceBytes
        storage = .allocate(byteCount: sliceBytes + Self.period, alignment: 64)
        for i in 0..<storage.count { storage[i] = UInt8(i % Self.period) }
    }

    deinit { storage.deallocate() }

    /// The slice carrying stream bytes `offset ..< offset + count` (count at most `sliceBytes`).
    public func slice(streamOffset offset: Int, count: Int) -> Slice {
        precondition(count <= sliceBytes)
        let start = offset % Self.period
        return Slice(unsafeBytes: UnsafeRawBufferPointer(rebasing: storage[start..<start + count]), owner: self)
    }
}

/// Makes the handler for each connection of a built-in server.
public struct BuiltinServer: Sendable {
    public let mode: ServeMode
    public let blastBytes: Int
    let payload: BlastPayload

    public init(mode: ServeMode, blastBytes: Int = 1 << 30, sliceBytes: Int = 64 * 1024) {
        self.mode = mode
        self.blastBytes = blastBytes
        payload = BlastPayload(sliceBytes: sliceBytes)
    }

    public func handler(for connection: Connection) -> any ConnectionHandler {
        switch mode {
        case .echo: return EchoHandler()
        case .sink: return SinkHandler()
        case .blast: return BlastHandler(payload: payload, total: blastBytes)
        }
    }
}

extension BuiltinServer {
    /// Serves this mode through the async face (`ReactorPool.serve`), with the same bytes on the wire as the
    /// callback handlers: echo writes back each inbound slice (waiting while the peer does not read), sink reads
    /// and drops, blast writes the pattern and returns (a graceful close). Returns when the pool shuts down.
    public func serveAsync(on pool: ReactorPool, host: String, port: Int,
                           onListening: @Sendable (SocketAddress) -> Void = { _ in }) async throws {
        try await pool.serve(host: host, port: port, onListening: onListening) { [self] c in
            switch mode {
            case .echo:
                for try await slice in c.inbound { try await c.write(slice) }
            case .sink:
                for try await _ in c.inbound {}
            case .blast:
                var sent = 0
                while sent < blastBytes {
                    let n = min(payload.sliceBytes, blastBytes - sent)
                    try await c.write(payload.slice(streamOffset: sent, count: n))
                    sent += n
                }
            }
        }
    }
}

/// Writes back what it reads: the filled read buffer itself becomes the slice. Stops reading while the peer
/// does not read its echoes (the connection is above its high watermark).
public final class EchoHandler: ConnectionHandler {
    public init() {}

    public func connection(_ connection: Connection, didRead bytes: InboundBytes) {
        do {
            try connection.write(bytes.retainedSlice())
        } catch {
            connection.abort()
            return
        }
        if !connection.isWritable { connection.pauseReading() }
    }

    public func connection(_ connection: Connection, writabilityChanged isWritable: Bool) {
        if isWritable { connection.resumeReading() } else { connection.pauseReading() }
    }
}

/// Reads and discards.
public final class SinkHandler: ConnectionHandler {
    public init() {}
}

/// Sends `total` bytes of the blast pattern, as much as the watermarks allow at a time, then closes gracefully.
/// The peer's end of input and the pool's drain do not cut it short (the default `closeAfterOutput` lets it go on
/// answering writability until everything is sent); the drain's deadline aborts it with a reset.
public final class BlastHandler: ConnectionHandler {
    let payload: BlastPayload
    let total: Int
    private var sent = 0

    public init(payload: BlastPayload, total: Int) {
        self.payload = payload
        self.total = total
    }

    public func connectionOpened(_ connection: Connection) { pump(connection) }

    public func connection(_ connection: Connection, writabilityChanged isWritable: Bool) {
        if isWritable { pump(connection) }
    }

    private func pump(_ connection: Connection) {
        while sent < total && connection.isWritable {
            let n = min(payload.sliceBytes, total - sent)
            do {
                try connection.write(payload.slice(streamOffset: sent, count: n))
            } catch {
                return
            }
            sent += n
        }
        if sent == total { connection.close() }
    }
}
