// Structured concurrency over the pool: `serve` runs each accepted connection's handler in a child task of one
// task group; cancelling `serve` stops accepting and aborts the connections still running. Also the awaitable
// shutdown, which keeps the blocking join off the cooperative thread pool.

extension ReactorPool {
    /// Listens on `host:port` and runs `handler` for every connection in a child task. When the handler returns the
    /// connection is closed gracefully; when it throws, or the task is cancelled, it is aborted. Returns (after all
    /// children finished) when the surrounding task is cancelled; `onListening` gets the bound address first.
    public func serve(
        host: String, port: Int, inboundLimit: Int = 256 * 1024,
        onListening: @Sendable (SocketAddress) -> Void = { _ in },
        handler: @escaping @Sendable (AsyncConnection) async throws -> Void
    ) async throws {
        let (accepted, sink) = AsyncStream<AsyncConnection>.makeStream()
        let address = try listen(host: host, port: port) { connection in
            let async = AsyncConnection(connection: connection, inboundLimit: inboundLimit)
            async.bridge.onOpen = { _ in sink.yield(async) }
            return async.bridge
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
            Thread.detach {
                self.shutdown(timeoutNanos: timeoutNanos)
                continuation.resume()
            }
        }
    }
}
