// The reactor pool: N loops on N threads. Servers listen on all loops at once (one SO_REUSEPORT socket each);
// clients connect round-robin over the loops. Shutdown stops accepting everywhere, lets connections drain,
// aborts what is left at the deadline, and joins the threads. Each slice ever queued is released by then.
import Glibc
import Synchronization

public final class ReactorPool: Sendable {
    public let loops: [EventLoop]
    public let configuration: ReactorConfiguration
    private let nextLoop = Atomic<Int>(0)
    private let state = Locked<(shutDown: Bool, listening: [SocketAddress], onShutdown: [@Sendable () -> Void])>(
        (false, [], []))

    /// Starts the loops' threads.
    public init(configuration: ReactorConfiguration = ReactorConfiguration()) throws(ReactorError) {
        try configuration.validate()
        self.configuration = configuration
        let admission = configuration.maxConnections.map { ConnectionAdmission(limit: $0) }
        var loops: [EventLoop] = []
        for i in 0..<configuration.loops {
            loops.append(try EventLoop(index: i, configuration: configuration, admission: admission))
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
        // Register on every loop; if one refuses (the pool began shutting down, or epoll failed), undo the others.
        var failure: ReactorError?
        for (loop, l) in zip(loops, listeners) {
            nonisolated(unsafe) let listener = l
            let result = loop.submitAndWait { () -> Result<Void, ReactorError> in
                Result { () throws(ReactorError) in try listener.register() }
            } ?? .failure(.poolShutdown)
            if case .failure(let e) = result { failure = e; break }
        }
        if let failure {
            for (loop, l) in zip(loops, listeners) {
                nonisolated(unsafe) let listener = l
                let undone = loop.submitAndWait { () -> Bool in
                    listener.close()
                    loop.listeners.removeAll { $0 === listener }
                    return true
                }
                if undone == nil {
                    listener.close()  // the loop has stopped: nothing else touches the listener now
                }
            }
            throw failure
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
        var failure: ReactorError?
        do { _ = try Sys.connect(raw, address) } catch { failure = .system(error) }
        // connect() has bound the socket (even while in progress): its local address is known now.
        let local = failure == nil ? try? Sys.localAddress(raw) : nil
        let connection = Connection(
            id: Connection.nextID(), descriptor: socket, loop: loop, connecting: true, remote: address, local: local)
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

    /// The counters of every loop. From a thread outside the pool they are taken on each loop (exact at that
    /// moment); on a loop's thread its own are exact and the others' are as of the end of their last iteration, so
    /// no loop ever waits for another. After shutdown, as they were when each loop stopped.
    public func counters() -> [LoopCounters] {
        let onLoop = PosixThread.currentLoop != nil
        return loops.map { loop in
            if loop.inLoop { return loop.snapshot() }
            if onLoop || loop.stopped { return loop.publishedCounters() }
            return loop.submitAndWait { loop.snapshot() } ?? loop.publishedCounters()
        }
    }

    /// Slices handed to any connection in this process and not yet released (queued, or being written). 0 once
    /// every connection has ended: the check that each slice was released.
    public static var slicesOutstandingInProcess: Int { NodePool.outstandingInProcess }

    /// Runs `body` when shutdown begins (at once if it has begun).
    func whenShuttingDown(_ body: @escaping @Sendable () -> Void) {
        let now = state.withLock { s -> Bool in
            if s.shutDown { return true }
            s.onShutdown.append(body)
            return false
        }
        if now { body() }
    }

    /// Stops accepting on every loop, closes every connection gracefully (queued bytes are sent), aborts what is
    /// still open after `timeoutNanos`, and joins the threads. Idempotent.
    /// On one of the pool's own loop threads (a callback, or an async handler of `serve`, which runs on its loop) it
    /// cannot wait for the loops, its own included: it starts the same shutdown, logs an error saying so, and
    /// returns at once. In async code use `shutdownGracefully(timeoutNanos:)`, which waits without blocking.
    public func shutdown(timeoutNanos: UInt64 = 5_000_000_000) {
        let onLoop = loops.first { $0.inLoop }
        let first = state.withLock { s -> Bool in
            defer { s.shutDown = true }
            return !s.shutDown
        }
        guard first else { return }
        for body in state.withLock({ s in defer { s.onShutdown = [] }; return s.onShutdown }) { body() }
        let deadline = EventLoop.now() + timeoutNanos
        configuration.logger.info("reactor pool shutting down")
        for loop in loops { loop.beginShutdown(deadline: deadline) }
        if let onLoop {
            configuration.logger.error(
                "ReactorPool.shutdown() called on loop \(onLoop.index)'s thread: the pool is stopping, but this call cannot wait for its loops; use shutdownGracefully() from async code")
            joinLoopsOffTheLoops()
            return
        }
        for loop in loops { loop.join() }
        configuration.logger.info("reactor pool stopped")
    }

    /// The loops' threads are joinable: when the shutdown began on one of them, a thread of its own joins them all
    /// (the calling loop's included, once its thread ends), so no thread is left unjoined.
    private func joinLoopsOffTheLoops() {
        let loops = self.loops
        PosixThread.detach(name: "zcr-join") { for loop in loops { loop.join() } }
    }

    deinit {
        // The last reference may go away on one of the loops (a handler held the pool): stop without joining there.
        if loops.contains(where: { $0.inLoop }) {
            for loop in loops { loop.beginShutdown(deadline: EventLoop.now() + 5_000_000_000) }
            joinLoopsOffTheLoops()
        } else {
            shutdown()
        }
    }
}
