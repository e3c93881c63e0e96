// A value behind a pthread mutex. Used for the few cross-thread structures that are not lock-free (task queues,
// waiter lists, fault tables). Why not Synchronization.Mutex: on Linux it is built on raw futex calls, which
// ThreadSanitizer cannot see, so every access it protects is reported as a race and the TSan run would be noise.
// Invariant: `value` is touched only between lock and unlock of `mutex`, which lives as long as the object.
import Glibc

final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
