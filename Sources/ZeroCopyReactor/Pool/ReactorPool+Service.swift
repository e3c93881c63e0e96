// The pool as a swift-service-lifecycle Service: in a ServiceGroup it runs until graceful shutdown (SIGTERM, by the
// group's configuration) and then shuts down gracefully: stop accepting, flush and close, join the loops.
public import ServiceLifecycle

extension ReactorPool: Service {
    public func run() async throws {
        // Returns when graceful shutdown is triggered; throws CancellationError when the group cancels us instead.
        try? await gracefulShutdown()
        await shutdownGracefully()
    }
}
