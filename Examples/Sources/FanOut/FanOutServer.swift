// Fan-out (chat, market data, pub/sub): every message any client sends is written to every connected client from
// ONE buffer. Each connection queues a slice of the same memory, so memory stays flat as clients grow: N clients cost
// N chain nodes per message, not N copies.
public import ZeroCopyReactor

public final class FanOutServer: Sendable {
    public let pool: ReactorPool
    private let members = Members()

    public init(loops: Int = 2, verifyIovecs: Bool = false) throws {
        var configuration = ReactorConfiguration(loops: loops)
        configuration.verifyIovecs = verifyIovecs  // the iovec checks, for zcr profile --attach
        pool = try ReactorPool(configuration: configuration)
    }

    /// Starts listening; returns the bound address.
    public func start(host: String = "127.0.0.1", port: Int = 0) throws -> SocketAddress {
        try pool.listen(host: host, port: port) { [members] _ in Member(members: members) }
    }

    /// Connected clients.
    public var clientCount: Int { members.count }

    public func shutdown() { pool.shutdown() }
}

/// The set of connected clients, shared by every loop.
final class Members: @unchecked Sendable {
    private let lock = NSLockLike()
    private var connections: [ObjectIdentifier: Connection] = [:]

    var count: Int { lock.with { connections.count } }
    func add(_ c: Connection) { lock.with { connections[ObjectIdentifier(c)] = c } }
    func remove(_ c: Connection) { _ = lock.with { connections.removeValue(forKey: ObjectIdentifier(c)) } }
    func snapshot() -> [Connection] { lock.with { Array(connections.values) } }
}

final class Member: ConnectionHandler {
    let members: Members
    init(members: Members) { self.members = members }

    func connectionOpened(_ connection: Connection) { members.add(connection) }

    func connection(_ connection: Connection, didRead bytes: InboundBytes) {
        let message = bytes.retainedSlice()  // the loop's read buffer, kept alive by every queued copy of the slice
        for member in members.snapshot() where member.isWritable {
            try? member.write(message)  // a slow member skips messages instead of growing memory
        }
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) { members.remove(connection) }
}
