// A TCP proxy that forwards what it reads without copying: the buffer one side read into is written to the other
// side as a slice. Backpressure both ways: a side stops reading while the other side cannot take more.
public import ZeroCopyReactor

public final class Proxy: Sendable {
    public let pool: ReactorPool
    public let upstream: SocketAddress

    public init(upstream: SocketAddress, loops: Int = 2, verifyIovecs: Bool = false) throws {
        self.upstream = upstream
        var configuration = ReactorConfiguration(loops: loops)
        configuration.verifyIovecs = verifyIovecs  // the iovec checks, for zcr profile --attach
        pool = try ReactorPool(configuration: configuration)
    }

    public func start(host: String = "127.0.0.1", port: Int = 0) throws -> SocketAddress {
        try pool.listen(host: host, port: port) { [pool, upstream] client in
            let clientSide = Side()
            let upstreamSide = Side()
            clientSide.peer = upstreamSide
            upstreamSide.peer = clientSide
            clientSide.connection = client
            // The upstream connection goes on the client's loop, so both sides share one thread.
            let index = pool.loops.firstIndex { $0 === client.loop }
            do {
                upstreamSide.connection = try pool.connect(to: upstream, loop: index) { _ in upstreamSide }
            } catch {
                client.abort()
            }
            return clientSide
        }
    }

    public func shutdown() { pool.shutdown() }
}

/// One side of a proxied pair. Both sides live on one loop, so these fields are touched by one thread.
final class Side: ConnectionHandler, @unchecked Sendable {
    var connection: Connection?
    weak var peer: Side?
    /// Bytes read before the other side was connected: held as slices, not copied.
    var early: [Slice] = []
    var open = false

    func connectionOpened(_ connection: Connection) {
        open = true
        guard let peer, let other = peer.connection else { return }
        for slice in peer.early { try? connection.write(slice) }
        peer.early = []
        if !connection.isWritable { other.pauseReading() }
    }

    func connection(_ connection: Connection, didRead bytes: InboundBytes) {
        let slice = bytes.retainedSlice()
        guard let peer, let other = peer.connection, peer.open else {
            early.append(slice)
            return
        }
        do { try other.write(slice) } catch { connection.abort(); return }
        if !other.isWritable { connection.pauseReading() }
    }

    func connection(_ connection: Connection, writabilityChanged isWritable: Bool) {
        if isWritable { peer?.connection?.resumeReading() }
    }

    func connectionDidReachEnd(_ connection: Connection) {
        peer?.connection?.shutdownOutput()  // half-close travels through
        connection.shutdownOutput()
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) {
        open = false
        if error != nil { peer?.connection?.abort() } else { peer?.connection?.close() }
    }
}
