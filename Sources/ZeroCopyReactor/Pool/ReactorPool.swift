// The reactor pool: N loops on N threads. Servers listen on all loops at once (one SO_REUSEPORT socket each);
// clients connect round-robin over the loops. Shutdown stops accepting everywhere, lets connections drain,
// aborts what is left at the deadline, and joins the threads. Each slice ever queued is released by then.
import Glibc
import Synchronization

public final class ReactorPool: Sendable {
    public let loops: [EventLoop]
    public let configuration: ReactorConfiguration
    private let nextLoop = Atomic<Int>(0)
    private let state = Locked<(shutDown: Bool, listening: [SocketAddress])>((false, []))

    /// Starts the loops' threads.
    public init(configuration: ReactorConfiguration = ReactorConfiguration()) throws(ReactorError) {
        try configuration.validate()
        self.configuration = configuration
        var loops: [EventLoop] = []
        for i in 0..<configuration.loops {
            loops.append(try EventLoop(index: i, configuration: configuration))
        }
        self.loops = loops
        for loop in loops { loop.start() }
        configuration.logger.info("reactor pool started", metadata: ["loops": "\(configuration.loops)"])
    }

    /// Listens on `host:port` on every loop. Port 0 picks one free port, shared by all loops.
    /// Returns the bound address once every loop's socket is listening.
    @discardableResult
    public func listen(host: String, port: Int,
                       handler factory: @escaping @Sendable (Connection) -> any ConnectionHandler) throws(ReactorError) -> SocketAddress {
        var address = try SocketAddress(host: host, port: port)
        guard !state.withLock({ $0.shutDown }) else { throw .poolShutdown }
        var listeners: [Listener] = []
        do {
            for loop in loops {
                let l = try Listener(address: address, loop: loop, factory: factory)
                if address.port == 0 { address.port = try l.localAddress.port }
                listeners.append(l)
            }
        } catch {
            for l in listeners { l.close() }
            throw .system(error)
        }
        for (loop, l) in zip(loops, listeners) {
            nonisolated(unsafe) let listener = l
            _ = loop.submitAndWait { listener.register() }
        }
        let bound = address
        state.withLock { $0.listening.append(bound) }
        configuration.logger.info("listening", metadata: ["address": "\(bound)", "loops": "\(loops.count)"])
        return bound
    }

    /// Stops accepting on `address` on every loop (connections already accepted go on).
    public func stopListening(_ address: SocketAddress) {
        let port = address.port
        for loop in loops {
            _ = loop.submitAndWait {
                loop.listeners.removeAll { l in
                    if l.port == port { l.close() }
                    return l.port == port
                }
                return 0
            }
        }
        state.withLock { $0.listening.removeAll { $0 == address } }
    }

    /// Opens a client connection on the next loop (or on `loop`). Returns at once; the handler hears
    /// `connectionOpened`, or `connectionClosed` with the error (refused, timeout, ...).
    @discardableResult
    public func connect(to address: SocketAddress, loop index: Int? = nil,
                        handler factory: @escaping @Sendable (Connection) -> any ConnectionHandler) throws(ReactorError) -> Connection {
        guard !state.withLock({ $0.shutDown }) else { throw .poolShutdown }
        let loop = loops[(index ?? nextLoop.wrappingAdd(1, ordering: .relaxed).oldValue) % loops.count]
        let socket: FileDescriptor
        do { socket = try Sys.socket(family: address.family) } catch { throw .system(error) }
        try? Sys.setOption(socket.raw, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1)
        let raw = socket.raw
        let connection = Connection(id: Connection.nextID(), descriptor: socket, loop: loop, connecting: true)
        var failure: ReactorError?
        do { _ = try Sys.connect(raw, address) } catch { failure = .system(error) }
        let timeout = configuration.connectTimeoutNanos
        let started = loop.execute { [failure] in
            let handler = factory(connection)
            if let failure {
                connection.fail(handler: handler, error: failure)
            } else {
                connection.start(handler: handler, connectTimeout: timeout)
            }
        }
        guard started else { throw .poolShutdown }
        return connection
    }

    /// The counters of every loop (taken on each loop; after shutdown, as they were when it stopped).
    public func counters() -> [LoopCounters] {
        loops.map { loop in
            loop.submitAndWait { loop.snapshot() } ?? loop.finalCounters.withLock { $0 } ?? LoopCounters()
        }
    }

    /// Stops accepting on every loop, closes every connection gracefully (queued bytes are sent), aborts what is
    /// still open after `timeoutNanos`, and joins the threads. Idempotent; must not be called from a loop thread.
    public func shutdown(timeoutNanos: UInt64 = 5_000_000_000) {
        precondition(!loops.contains { $0.inLoop }, "ReactorPool.shutdown() called on one of its own loops")
        let first = state.withLock { s -> Bool in
            defer { s.shutDown = true }
            return !s.shutDown
        }
        guard first else { return }
        let deadline = EventLoop.now() + timeoutNanos
        configuration.logger.info("reactor pool shutting down")
        for loop in loops { loop.beginShutdown(deadline: deadline) }
        for loop in loops { loop.join() }
        configuration.logger.info("reactor pool stopped")
    }

    deinit {
        // The last reference may go away on one of the loops (a handler held the pool): stop without joining there.
        if loops.contains(where: { $0.inLoop }) {
            for loop in loops { loop.beginShutdown(deadline: EventLoop.now() + 5_000_000_000) }
        } else {
            shutdown()
        }
    }
}
