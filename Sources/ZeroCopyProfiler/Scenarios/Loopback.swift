// One server connection and one client connection of the same pool over loopback, on two different loops when the
// pool has more than one, and the client side that reads and discards while counting toward a target.
// It never looks at the bytes it discards and never allocates per read.
import Synchronization
import ZeroCopyReactor

/// A client that discards what it reads and completes a `Completion` once a target byte count has arrived.
final class ReceiveCounter: ConnectionHandler, @unchecked Sendable {
    let opened = Completion()
    // Loop only.
    private var received = 0
    private var target = Int.max
    private var reached: Completion?

    /// Completes when `total` bytes have arrived since the connection opened. Call on the connection's loop.
    func expect(total: Int, completion: Completion) {
        target = total
        reached = completion
        check()
    }

    private func check() {
        if received >= target, let r = reached {
            reached = nil
            r.complete()
        }
    }

    func connectionOpened(_ connection: Connection) { opened.complete() }

    func connection(_ connection: Connection, didRead bytes: InboundBytes) {
        received += bytes.count
        check()
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) {
        let why = error.map { "\($0)" } ?? "the peer closed"
        opened.fail("the client connection failed: \(why)")
        reached?.fail("the client connection closed after \(received) bytes: \(why)")
        reached = nil
    }
}

/// A server side that only reads (and discards): the seed scenarios write to it from outside its callbacks.
final class QuietServer: ConnectionHandler, Sendable {}

/// A server connection with its handler and the client connection reading from it.
struct LoopbackPair<Server: ConnectionHandler & Sendable>: @unchecked Sendable {
    var server: Connection
    var serverHandler: Server
    var client: Connection
    var receiver: ReceiveCounter

    /// Listens on 127.0.0.1 (port 0) and connects one client. The kernel picks the accepting loop
    /// (SO_REUSEPORT), so the pair is retried a few times until server and client sit on different loops.
    static func open(pool: ReactorPool, makeServer: @escaping @Sendable () -> Server) throws(ProfileError)
        -> LoopbackPair
    {
        let accepted = Mutex<[(Connection, Server)]>([])
        let address: SocketAddress
        do {
            address = try pool.listen(host: "127.0.0.1", port: 0) { connection in
                let handler = makeServer()
                accepted.withLock { $0.append((connection, handler)) }
                return handler
            }
        } catch {
            throw .setup("cannot listen on 127.0.0.1: \(error)")
        }
        let attempts = pool.loops.count > 1 ? 8 : 1
        for attempt in 0..<attempts {
            let receiver = ReceiveCounter()
            let clientLoop = attempt % pool.loops.count
            let client: Connection
            do {
                client = try pool.connect(to: address, loop: clientLoop) { _ in receiver }
            } catch {
                throw .setup("cannot connect to \(address): \(error)")
            }
            guard receiver.opened.wait(seconds: 10), receiver.opened.failure == nil else {
                throw .setup(receiver.opened.failure ?? "connecting to \(address) took more than 10 s")
            }
            // The server side is accepted on its loop at about the same time; wait for it without sleeping blindly.
            let deadline = EventLoop.now() + 10_000_000_000
            var server: (Connection, Server)?
            while server == nil {
                server = accepted.withLock { $0.count > attempt ? $0[attempt] : nil }
                if server == nil {
                    guard EventLoop.now() < deadline else { throw .setup("the listener did not accept within 10 s") }
                    // Hop through the loops' task queues: each hop lets every loop run one more iteration.
                    for loop in pool.loops { _ = loop.submitAndWait { 0 } }
                }
            }
            let (s, h) = server!
            if s.loop.index != clientLoop || attempt == attempts - 1 {
                return LoopbackPair(server: s, serverHandler: h, client: client, receiver: receiver)
            }
            client.abort()
            s.abort()
        }
        preconditionFailure("unreachable: the last attempt always returns")
    }
}
