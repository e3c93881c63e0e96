// Threads for tests: blocking work (plain sockets, a generator run) on a thread of its own, so it never holds one of
// the few threads Swift concurrency has on two cores. Shared by every test target.
public import Glibc

/// Starts a pthread running `body` and returns it (join it, or detach it).
@discardableResult
public func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box {
        let body: @Sendable () -> Void
        init(_ b: @escaping @Sendable () -> Void) { body = b }
    }
    var tid = pthread_t()
    let arg = Unmanaged.passRetained(Box(body)).toOpaque()
    let rc = pthread_create(
        &tid, nil,
        { p in
            Unmanaged<Box>.fromOpaque(p!).takeRetainedValue().body()
            return nil
        }, arg)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return tid
}

/// Runs `body` on a new detached thread.
public func runThread(_ body: @escaping @Sendable () -> Void) {
    pthread_detach(startThread(body))
}

/// Runs `body` on a thread of its own and awaits its result.
public func offThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
        runThread { c.resume(returning: body()) }
    }
}

/// Runs throwing `body` on a thread of its own and awaits its result.
public func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await offThread { Result { try body() } }.get()
}
