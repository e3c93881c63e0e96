// Cutting a graceful shutdown short: what a server does on a second SIGTERM. It only moves every loop's shutdown
// deadline to now; the loops abort what is still open themselves, so every slice is still released exactly once.

extension ReactorPool {
    /// Ends the drain of a `shutdown(timeoutNanos:)` in progress (on another thread) at once: on every loop, each
    /// connection still open is aborted (a reset to the peer; its queued slices are released with `.aborted`), and
    /// `shutdown` returns as soon as the loops have stopped. Safe from any thread. A loop keeps the earliest deadline
    /// it was given, so a `shutdown` whose start reaches a loop after this call cannot lengthen the drain again.
    /// Called with no shutdown begun, it stops the loops the same way; `shutdown` must still be called to join them.
    public func cutShutdownShort() {
        let now = EventLoop.now()
        for loop in loops { loop.beginShutdown(deadline: now) }
    }
}
