// Plain threads for the few places that need one: the loops, and a blocking join kept off Swift concurrency's pool.
import Glibc

enum Thread {
    /// Runs `body` on a new detached thread (named `name` if given). Returns the thread.
    @discardableResult
    static func detach(name: String? = nil, _ body: @escaping @Sendable () -> Void) -> pthread_t {
        final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        let arg = Unmanaged.passRetained(Box(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, arg)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        pthread_detach(tid)
        return tid
    }
}
