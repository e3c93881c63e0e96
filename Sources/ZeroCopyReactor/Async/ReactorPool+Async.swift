// Concurrency over the pool: `serve` runs each accepted connection's handler in a task of its own, on the
// connection's loop by default (the loop is a TaskExecutor: EventLoop+TaskExecutor.swift), so a read resumes its
// consumer on the thread that read it, in the same iteration. Cancelling `serve` stops accepting and cancels the
// handlers still running (which aborts their connections); `serve` returns after every handler has ended.
// The handler tasks are unstructured, with their handles kept by `serve` (`HandlerTasks`): a DiscardingTaskGroup
// child that prefers a custom executor hangs Swift 6.3.1's runtime when it completes there (see the executor's
// file). They inherit the task locals and priority of the task that called `serve`, as children would.
// Also the awaitable shutdown, which keeps the blocking join off the cooperative thread pool.
@_spi(TestKit) import ServiceLifecycle
import Synchronization

/// Where `ReactorPool.serve` runs connection handlers.
public enum HandlerExecutor: Sendable {
    /// On the connection's own loop thread (the default): a request is read, handled and its reply queued in one
    /// loop iteration, with no thread hop and no allocation. A handler that blocks its thread (CPU-heavy work,
    /// blocking calls) stalls every connection of that loop meanwhile; move such work elsewhere, or use `.global`.
    case connectionLoop
    /// On Swift's global concurrent executor: each resumption hops from the loop to the cooperative pool (a
    /// wake-up and an allocation per resumption), but a handler may block without stalling the loop.
    case global
}

extension ReactorPool {
    /// Listens on `host:port` and runs `handler` for every connection in a task of its own, on the connection's
    /// loop unless `handlerExecutor` says otherwise. When the handler returns the connection is closed gracefully
    /// (what it wrote is sent, then FIN); when it throws, or its task is cancelled, the connection is aborted
    /// (reset), so a reply cut short never looks complete to the peer. Every connection accepted is closed one way
    /// or the other, and none is kept after it ends.
    /// Returns, after all handlers ended, when the surrounding task is cancelled or the pool shuts down (in a
    /// ServiceGroup, whatever the order of the services). `onListening` gets the bound address first.
    public func serve(
        host: String, port: Int, inboundLimit: Int = 256 * 1024, handlerExecutor: HandlerExecutor = .connectionLoop,
        onListening: @Sendable (SocketAddress) -> Void = { _ in },
        handler: @escaping @Sendable (AsyncConnection) async throws -> Void
    ) async throws {
        let (accepted, sink) = AsyncStream<AsyncConnection>.makeStream()
        let address = try listen(host: host, port: port) { connection in
            let async = AsyncConnection(connection: connection, inboundLimit: inboundLimit)
            async.bridge.onOpen = { _ in  // dropped by the bridge once called (no cycle)
                // After serve has ended nobody would run the handler: abort instead of leaking the connection.
                if case .terminated = sink.yield(async) { async.connection.abort() }
            }
            return async.bridge
        }
        let poolStopped = Atomic<Bool>(false)
        whenShuttingDown {
            poolStopped.store(true, ordering: .relaxed)
            sink.finish()
        }
        onListening(address)
        let running = HandlerTasks()
        await withTaskCancellationHandler {
            for await connection in accepted {
                let loop: (any TaskExecutor)? = handlerExecutor == .connectionLoop ? connection.connection.loop : nil
                let id = connection.connection.id
                // The task's whole frame is this closure's: it keeps nothing but what it awaits (the failure path
                // is a plain function), so an idle connection's task stays small.
                running.start(id, on: loop) {
                    do {
                        try await handler(connection)
                        connection.close()
                    } catch {
                        connection.handlerFailed(error)
                    }
                    running.ended(id)
                }
            }
            await running.waitUntilAllEnded()
        } onCancel: {
            stopListening(address)
            sink.finish()
            running.cancelAll()
        }
        // The pool shut down under us. Inside a ServiceGroup service, the group ends its services in its own order
        // and takes a service that ends before it was asked to for a failure: wait until this one is asked (its
        // graceful shutdown or cancellation). Anywhere else, return now.
        if poolStopped.load(ordering: .relaxed) && !Task.isCancelled && TaskLocals.gracefulShutdownManager != nil {
            try? await gracefulShutdown()
        }
    }

    /// Connects to `address` and returns the connection once it is established (within the pool's connect
    /// timeout). Throws what the connect met (`.system` with ECONNREFUSED, `.connectTimeout`, `.poolShutdown`), or
    /// CancellationError if the task is cancelled first (the attempt is then aborted).
    public func connect(to address: SocketAddress, inboundLimit: Int = 256 * 1024) async throws -> AsyncConnection {
        let outcome = ConnectOutcome()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AsyncConnection, any Error>) in
                outcome.arm(continuation)
                do {
                    let started = try connect(to: address) { connection in
                        let async = AsyncConnection(connection: connection, inboundLimit: inboundLimit)
                        async.bridge.onOpen = { _ in outcome.finish(.success(async)) }
                        async.bridge.onFailedToOpen = { error in outcome.finish(.failure(error ?? .connectionClosed)) }
                        return async.bridge
                    }
                    outcome.started(started)
                } catch {
                    outcome.finish(.failure((error as? ReactorError) ?? .poolShutdown))
                }
            }
        } onCancel: {
            outcome.cancel()
        }
    }

    /// `shutdown` without blocking a task's thread: the join runs on a thread of its own.
    public func shutdownGracefully(timeoutNanos: UInt64 = 5_000_000_000) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            PosixThread.detach {
                self.shutdown(timeoutNanos: timeoutNanos)
                continuation.resume()
            }
        }
    }
}

/// One async connect's outcome: the continuation, resumed exactly once by whichever comes first (open, failure,
/// cancellation), and the connection to abort if the waiting task is cancelled.
private final class ConnectOutcome: @unchecked Sendable {
    private struct State {
        var continuation: CheckedContinuation<AsyncConnection, any Error>?
        var result: Result<AsyncConnection, any Error>?
        var connection: Connection?
        var cancelled = false
    }
    private let state = Locked(State())

    func arm(_ continuation: CheckedContinuation<AsyncConnection, any Error>) {
        let ready = state.withLock { s -> Result<AsyncConnection, any Error>? in
            if s.cancelled { s.result = s.result ?? .failure(CancellationError()) }
            if let r = s.result { return r }
            s.continuation = continuation
            return nil
        }
        if let ready { continuation.resume(with: ready) }
    }

    func started(_ connection: Connection) {
        let abort = state.withLock { s -> Bool in
            s.connection = connection
            return s.cancelled
        }
        if abort { connection.abort() }
    }

    func finish(_ result: Result<AsyncConnection, ReactorError>) {
        let (continuation, value) = state.withLock { s -> (CheckedContinuation<AsyncConnection, any Error>?, Result<AsyncConnection, any Error>) in
            if s.result != nil { return (nil, s.result!) }
            let value: Result<AsyncConnection, any Error> = s.cancelled
                ? .failure(CancellationError()) : result.mapError { $0 as any Error }
            s.result = value
            defer { s.continuation = nil }
            return (s.continuation, value)
        }
        continuation?.resume(with: value)
    }

    func cancel() {
        let connection = state.withLock { s -> Connection? in
            s.cancelled = true
            return s.connection
        }
        // Aborting a connect in progress closes it without opening: `finish` then reports CancellationError.
        connection?.abort()
        if connection == nil { finish(.failure(.aborted)) }
    }
}

/// The handler tasks of one `serve`: their handles (to cancel them all when `serve` is cancelled) and the wait for
/// the last to end. A task removes itself when it ends; one that ends before it was added is never added.
final class HandlerTasks: @unchecked Sendable {
    private struct State {
        var tasks: [UInt64: Task<Void, Never>] = [:]
        var cancelled = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Locked(State())

    /// Starts `body` in a task that prefers `executor` (nil: the global executor), under `id`. Cancelled at once
    /// when `cancelAll` came first.
    /// `body` must call `ended(id)` last.
    func start(_ id: UInt64, on executor: (any TaskExecutor)?, _ body: @escaping @Sendable () async -> Void) {
        state.withLock { s in
            // Created under the lock: the task cannot remove itself before it is in the table (its removal waits
            // for the lock), and a task is never started after the wait for the last one has begun unseen.
            let task = Task(executorPreference: executor, operation: body)
            s.tasks[id] = task
            if s.cancelled { task.cancel() }
        }
    }

    func ended(_ id: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.tasks[id] = nil
            guard s.tasks.isEmpty else { return nil }
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    func cancelAll() {
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            s.cancelled = true
            return Array(s.tasks.values)
        }
        for task in tasks { task.cancel() }
    }

    /// Returns once no handler task is left (called once, after the last `start`).
    func waitUntilAllEnded() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.tasks.isEmpty { return true }
                s.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Handler tasks running now (for tests).
    var count: Int { state.withLock { $0.tasks.count } }
}
