// The four servers `zcr serve` runs, usable by embedders too: echo (writes back the very buffer it read into),
// sink (reads and discards), blast (sends a byte pattern cut from one shared payload, then closes) and file (sends
// one file, with sendfile or from a read-only mapping, then closes).

/// What a built-in server does with each connection.
public enum ServeMode: String, Sendable, CaseIterable {
    case echo, sink, blast, file
}

/// How the file server sends its file.
public enum FileIO: String, Sendable, CaseIterable {
    /// sendfile(2) from the page cache: no mapping, no page faults on the loop, a truncated file is an error.
    case sendfile
    /// Slices of one read-only mapping, sent with sendmsg (the kernel copies from the mapped pages).
    case mmap
}

/// The file a file server sends to every connection: opened (or mapped) once and shared by all of them.
public struct ServedFile: Sendable {
    public let path: String
    public let io: FileIO
    let open: OpenFile?
    let mapped: MappedFile?

    /// Opens (sendfile) or maps (mmap) `path`. With `readAhead`, asks the kernel to bring the file into the page cache
    /// now (posix_fadvise WILLNEED): sendfile of pages that are not cached blocks the loop on the disk.
    public init(path: String, io: FileIO = .sendfile, readAhead: Bool = true) throws(ReactorError) {
        self.path = path
        self.io = io
        switch io {
        case .sendfile:
            let file = try OpenFile(path: path)
            if readAhead { file.readAhead() }
            open = file
            mapped = nil
        case .mmap:
            open = nil
            mapped = try MappedFile(path: path)
        }
    }

    /// The whole file as one slice (a region, or the mapping).
    func slice() throws(ReactorError) -> Slice {
        if let open { return try open.region() }
        return mapped!.slice()
    }
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

    /// The file of `.file` mode.
    public let file: ServedFile?

    public init(mode: ServeMode, blastBytes: Int = 1 << 30, sliceBytes: Int = 64 * 1024, file: ServedFile? = nil) {
        precondition(mode != .file || file != nil, "file mode needs a file")
        self.mode = mode
        self.blastBytes = blastBytes
        self.file = file
        payload = BlastPayload(sliceBytes: sliceBytes)
    }

    public func handler(for connection: Connection) -> any ConnectionHandler {
        switch mode {
        case .echo: return EchoHandler()
        case .sink: return SinkHandler()
        case .blast: return BlastHandler(payload: payload, total: blastBytes)
        case .file: return FileHandler(file: file!)
        }
    }
}

extension BuiltinServer {
    /// Serves this mode through the async face (`ReactorPool.serve`), with the same bytes on the wire as the
    /// callback handlers: echo writes back each inbound slice (waiting while the peer does not read), sink reads
    /// and drops, blast writes the pattern and returns (a graceful close). Returns when the pool shuts down.
    public func serveAsync(on pool: ReactorPool, host: String, port: Int,
                           onListening: @Sendable (SocketAddress) -> Void = { _ in }) async throws {
        // One small async function per mode: an async frame holds every local of every branch, and the frame of
        // an idle handler is the memory its connection costs while it waits.
        let handler: @Sendable (AsyncConnection) async throws -> Void
        switch mode {
        case .echo: handler = Self.echo
        case .sink: handler = Self.sink
        case .blast: handler = { [payload, blastBytes] c in try await Self.blast(c, payload, blastBytes) }
        case .file: handler = { [file] c in try await c.write(file!.slice()) }
        }
        try await pool.serve(host: host, port: port, onListening: onListening, handler: handler)
    }

    @Sendable private static func echo(_ c: AsyncConnection) async throws {
        for try await slice in c.inbound { try await c.write(slice) }
    }

    @Sendable private static func sink(_ c: AsyncConnection) async throws {
        for try await _ in c.inbound {}
    }

    private static func blast(_ c: AsyncConnection, _ payload: BlastPayload, _ total: Int) async throws {
        var sent = 0
        while sent < total {
            let n = min(payload.sliceBytes, total - sent)
            try await c.write(payload.slice(streamOffset: sent, count: n))
            sent += n
        }
    }
}

/// Writes back what it reads: the filled read buffer itself becomes the slice. Stops reading while the peer
/// does not read its echoes (the connection is above its high watermark).
public final class EchoHandler: ConnectionHandler {
    public init() {}

    public func connection(_ connection: Connection, didRead bytes: InboundBytes) {
        do {
            try connection.write(bytes)
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

/// Sends the file to the connection, then closes gracefully (the peer's input is not read). A file that shrank
/// under the send ends the connection with `ReactorError.fileTruncated` and a reset.
public final class FileHandler: ConnectionHandler {
    let file: ServedFile

    public init(file: ServedFile) { self.file = file }

    public func connectionOpened(_ connection: Connection) {
        do {
            try connection.write(file.slice())
            connection.close()
        } catch {
            connection.abort()
        }
    }
}
