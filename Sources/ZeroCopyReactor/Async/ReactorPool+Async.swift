// Structured concurrency over the pool: `serve` runs each accepted connection's handler in a child task of one
// task group; cancelling `serve` stops accepting and aborts the connections still running. Also the awaitable
// shutdown, which keeps the blocking join off the cooperative thread pool.
// Handler tasks run on the global concurrent executor. Running them on their connection's loop (the loop as a
// TaskExecutor: enqueue hands the job to `execute`, which calls `runSynchronously(on:)`, and `addTask(executorPreference:
// loop)`) was tried again with Swift 6.3.1 and hangs: a loop thread blocks for good in the runtime's
// withStatusRecordLock, under _swift_taskGroup_detachChild, from DiscardingTaskGroup::offer, when a child completes
// on the loop (AsyncTests, every run). The cost of the hop stays; see BENCHMARKS.md for what it is.
@_spi(TestKit) import ServiceLifecycle
import Synchronization

extension ReactorPool {
    /// Listens on `host:port` and runs `handler` for every connection in a child task. When the handler returns the
    /// connection is closed gracefully (what it wrote is sent, then FIN); when it throws, or its task is cancelled,
    /// the connection is aborted (reset), so a reply cut short never looks complete to the peer. Every connection
    /// accepted is closed one way or the other, and none is kept after it ends.
    /// Returns, after all children finished, when the surrounding task is cancelled or the pool shuts down (in a
    /// ServiceGroup, whatever the order of the services). `onListening` gets the bound address first.
    public func serve(
        host: String, port: Int, inboundLimit: Int = 256 * 1024,
        onListening: @Sendable (SocketAddress) -> Void = { _ in },
        handler: @escaping @Sendable (AsyncConnection) async throws -> Void
    ) async throws {
        let (accepted, sink) = AsyncStream<AsyncConnection>.makeStream()
        let logger = configuration.logger
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
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                for await connection in accepted {
                    group.addTask {
                        do {
                            try await handler(connection)
                            connection.close()
                        } catch {
                            if !(error is CancellationError) {
                                connection.connection.loop.handlerFailures.wrappingAdd(1, ordering: .relaxed)
                                logger.warning("connection handler failed", metadata: [
                                    "connection": "\(connection.connection.id)",
                                    "peer": "\(connection.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)"])
                            }
                            connection.abort()
                        }
                    }
                }
            }
        } onCancel: {
            stopListening(address)
            sink.finish()
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
