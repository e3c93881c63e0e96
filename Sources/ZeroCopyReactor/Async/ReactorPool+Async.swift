// Structured concurrency over the pool: `serve` runs each accepted connection's handler in a child task of one
// task group; cancelling `serve` stops accepting and aborts the connections still running. Also the awaitable
// shutdown, which keeps the blocking join off the cooperative thread pool.

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
        whenShuttingDown { sink.finish() }
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
                                logger.warning("connection handler failed", metadata: [
                                    "connection": "\(connection.connection.id)", "error": "\(error)"])
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
