// A static file server: every connection receives the whole file and is closed. The file is opened once and sent
// with sendfile(2) from the page cache, in regions: it is never read into the heap or mapped, whatever the number of
// clients, and a file truncated while it is being sent ends that connection with a reset, never a crash (a
// truncated mapping would raise SIGBUS). Readahead asks the kernel to cache the file up front, since a sendfile of
// uncached pages waits for the disk on the loop thread.
public import ZeroCopyReactor

public final class FileServer: Sendable {
    public let pool: ReactorPool
    public let file: OpenFile
    public let path: String
    public let size: Int
    /// Regions of at most this many bytes, so the watermarks pace each connection.
    let chunk: Int

    public init(path: String, loops: Int = 2, chunk: Int = 1 << 20, verifyIovecs: Bool = false) throws {
        file = try OpenFile(path: path)
        self.path = path
        size = try file.size()
        file.readAhead()
        var configuration = ReactorConfiguration(loops: loops)
        configuration.verifyIovecs = verifyIovecs  // the iovec checks, for zcr profile --attach
        pool = try ReactorPool(configuration: configuration)
        self.chunk = chunk
    }

    public func start(host: String = "127.0.0.1", port: Int = 0) throws -> SocketAddress {
        try pool.listen(host: host, port: port) { [file, size, chunk] _ in Sender(file: file, size: size, chunk: chunk) }
    }

    public func shutdown() { pool.shutdown() }
}

final class Sender: ConnectionHandler {
    let file: OpenFile
    let size: Int
    let chunk: Int
    var offset = 0

    init(file: OpenFile, size: Int, chunk: Int) {
        self.file = file
        self.size = size
        self.chunk = chunk
    }

    func connectionOpened(_ connection: Connection) { pump(connection) }

    func connection(_ connection: Connection, writabilityChanged isWritable: Bool) {
        if isWritable { pump(connection) }
    }

    private func pump(_ connection: Connection) {
        while offset < size && connection.isWritable {
            let end = min(offset + chunk, size)
            do { try connection.write(file.region(offset..<end)) } catch { return }
            offset = end
        }
        if offset == size { connection.close() }
    }
}
