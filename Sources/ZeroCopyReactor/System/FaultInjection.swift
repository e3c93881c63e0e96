// Test-only faults at the syscall layer: a given errno, or a short count, at the Nth matching call.
// Faults are scoped to one descriptor (or to all), and optionally to the arming thread, so tests running in parallel
// do not see each other's: a call with no descriptor (socket, epoll_create, eventfd) is scoped by thread or not at all.
// In release builds `check` is an inlined constant and the whole mechanism disappears.
import Glibc
import Synchronization

/// The calls that go through `Sys` and can be faulted.
public enum SyscallName: String, Sendable, CaseIterable {
    case read, send, sendmsg, accept, connect, socket, bind, listen, shutdown, close
    case setsockopt, getsockopt, getsockname
    /// The loop's wait: `epollPwait2` while the kernel has it, `epollWait` once Sys fell back (see `Sys.epollWait`).
    case epollPwait2 = "epoll_pwait2", epollWait = "epoll_wait"
    case epollCreate = "epoll_create", epollCtl = "epoll_ctl", eventfd
    case sendfile
    /// recvmsg(MSG_ERRQUEUE): reading MSG_ZEROCOPY completions.
    case recvErrorQueue = "recvmsg_errqueue"
}

/// What an injected fault does to the call it hits.
public enum FaultKind: Sendable, Equatable {
    /// The call fails with this errno without reaching the kernel (EINTR and EAGAIN included).
    case errno(Int32)
    /// The call is made, but asks the kernel for at most this many bytes (read, send, sendmsg).
    case shortCount(Int)
}

#if DEBUG
/// Faults armed by tests. Each fault hits the `nth` matching call (1-based) and then `times - 1` more.
enum FaultInjection {
    struct Armed {
        var call: SyscallName
        var fd: Int32?
        /// The pthread that armed the fault, when it is scoped to that thread.
        var thread: UInt?
        var kind: FaultKind
        var skip: Int
        var remaining: Int
        var hits: Int
    }

    // `armedCount` is read on every syscall with relaxed ordering: it only decides whether to take the lock.
    // A test arms its fault before it starts the traffic that should hit it (happens-before through the
    // lock and the thread hand-off), so a relaxed read that is momentarily stale cannot miss a fault.
    private static let armedCount = Atomic<Int>(0)
    private static let faults = Locked<[Int: Armed]>([:])
    private static let nextID = Atomic<Int>(1)

    /// Arms a fault; returns a handle for `hits` and `disarm`. With `onThisThread`, only calls made by the calling
    /// thread match (for calls without a descriptor, such as `epoll_create` inside `ReactorPool.init`).
    @discardableResult
    static func inject(_ kind: FaultKind, on call: SyscallName, fd: Int32? = nil, onThisThread: Bool = false,
                       atCall nth: Int = 1, times: Int = 1) -> Int {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let thread = onThisThread ? UInt(pthread_self()) : nil
        faults.withLock {
            $0[id] = Armed(call: call, fd: fd, thread: thread, kind: kind, skip: nth - 1, remaining: times, hits: 0)
        }
        armedCount.wrappingAdd(1, ordering: .relaxed)
        return id
    }

    static func hits(_ id: Int) -> Int { faults.withLock { $0[id]?.hits ?? 0 } }

    static func disarm(_ id: Int) {
        let removed = faults.withLock { $0.removeValue(forKey: id) != nil }
        if removed { armedCount.wrappingSubtract(1, ordering: .relaxed) }
    }

    /// A descriptor was closed: faults scoped to it stop matching (their hits stay readable until disarmed).
    /// Otherwise a fault a test left partly unused would hit whichever later socket reuses the number, in
    /// another test running in parallel.
    static func descriptorClosed(_ fd: Int32) {
        if armedCount.load(ordering: .relaxed) == 0 { return }
        faults.withLock { table in
            for (id, var armed) in table where armed.fd == fd && armed.remaining > 0 {
                armed.remaining = 0
                table[id] = armed
            }
        }
    }

    @inline(__always)
    static func check(_ call: SyscallName, fd: Int32) -> FaultKind? {
        if armedCount.load(ordering: .relaxed) == 0 { return nil }
        let thread = UInt(pthread_self())
        return faults.withLock { table -> FaultKind? in
            for (id, var armed) in table
            where armed.call == call && (armed.fd == nil || armed.fd == fd) && (armed.thread ?? thread) == thread {
                if armed.remaining == 0 { continue }
                if armed.skip > 0 {
                    armed.skip -= 1
                    table[id] = armed
                    continue
                }
                armed.remaining -= 1
                armed.hits += 1
                table[id] = armed
                return armed.kind
            }
            return nil
        }
    }
}
#else
enum FaultInjection {
    @inline(__always) static func check(_ call: SyscallName, fd: Int32) -> FaultKind? { nil }
    @inline(__always) static func descriptorClosed(_ fd: Int32) {}
}
#endif
