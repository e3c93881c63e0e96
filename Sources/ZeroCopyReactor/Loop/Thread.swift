// Plain threads, made in one place: the loops (joined at shutdown), a blocking join kept off Swift concurrency's
// pool (detached), and the profiler's measured work (joined, with its result). Also the thread's own loop, so that
// calls that would make one loop wait for another can tell and refuse.
import CZeroCopyShims
import Glibc

package enum PosixThread {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts `body` on a new thread named `name` (at most 15 characters are kept) and returns its pthread id.
    /// A joinable thread must be joined (`join`) by its creator; a detached one cleans up after itself. Traps if
    /// the system has no thread left to give: the loops cannot run without theirs.
    @discardableResult
    package static func spawn(name: String? = nil, joinable: Bool, _ body: @escaping () -> Void) -> UInt {
        let named: () -> Void = name.map { n in { zcr_set_thread_name(n); body() } } ?? body
        let arg = Unmanaged.passRetained(Box(named)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, arg)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        if !joinable { pthread_detach(tid) }
        return UInt(tid)
    }

    /// Waits for a joinable thread to end.
    package static func join(_ thread: UInt) {
        pthread_join(pthread_t(thread), nil)
    }

    /// Runs `body` on a new detached thread.
    package static func detach(name: String? = nil, _ body: @escaping @Sendable () -> Void) {
        spawn(name: name, joinable: false, body)
    }

    /// Runs `body` on a new thread of its own and returns its result once the thread has ended.
    package static func run<T>(_ body: @escaping () -> T) -> T {
        var result: T?
        let tid = spawn(joinable: true) { result = body() }
        join(tid)
        return result!
    }

    // MARK: the thread's loop

    /// One process-wide key; its value is the loop (unretained: a loop outlives its thread) on a loop's thread.
    private static let loopKey: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()

    /// Called by a loop's thread first thing.
    static func setCurrentLoop(_ loop: EventLoop) {
        pthread_setspecific(loopKey, Unmanaged.passUnretained(loop).toOpaque())
    }

    /// The loop whose thread this is, if any.
    static var currentLoop: EventLoop? {
        guard let raw = pthread_getspecific(loopKey) else { return nil }
        return Unmanaged<EventLoop>.fromOpaque(raw).takeUnretainedValue()
    }
}
