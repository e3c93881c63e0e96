// A static file server: every connection receives the whole file and is closed. The file is memory-mapped once and
// sent from the page cache as slices of the mapping: it is never read into the heap, whatever the number of clients.
public import ZeroCopyReactor

public final class FileServer: Sendable {
    public let pool: ReactorPool
    public let file: MappedFile
    /// Slices of at most this many bytes, so the watermarks pace each connection.
    let chunk: Int

    public init(path: String, loops: Int = 2, chunk: Int = 1 << 20) throws {
        file = try MappedFile(path: path)
        pool = try ReactorPool(configuration: ReactorConfiguration(loops: loops))
        self.chunk = chunk
    }

    public func start(host: String = "127.0.0.1", port: Int = 0) throws -> SocketAddress {
        try pool.listen(host: host, port: port) { [file, chunk] _ in Sender(file: file, chunk: chunk) }
    }

    public func shutdown() { pool.shutdown() }
}

final class Sender: ConnectionHandler {
    let file: MappedFile
    let chunk: Int
    var offset = 0

    init(file: MappedFile, chunk: Int) {
        self.file = file
        self.chunk = chunk
    }

    func connectionOpened(_ connection: Connection) { pump(connection) }

    func connection(_ connection: Connection, writabilityChanged isWritable: Bool) {
        if isWritable { pump(connection) }
    }

    private func pump(_ connection: Connection) {
        while offset < file.count && connection.isWritable {
            let end = min(offset + chunk, file.count)
            do { try connection.write(file.slice(offset..<end)) } catch { return }
            offset = end
        }
        if offset == file.count { connection.close() }
    }
}
