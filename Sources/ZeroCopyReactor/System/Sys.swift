// The one thin layer every system call goes through. Contract:
// - EINTR is retried here and never seen above;
// - EAGAIN/EWOULDBLOCK (and EINPROGRESS for connect) come back as `.wouldBlock`, a value, not an error;
// - any other errno is thrown as a typed SystemError naming the call;
// - EBADF and EFAULT are bugs in this library and stop the process, naming the call;
// - tests inject faults per call and descriptor (FaultInjection); release builds compile that out;
// - the loop's wait uses epoll_pwait2 (nanosecond timeouts) and falls back to epoll_wait for good, process-wide,
//   the first time epoll_pwait2 answers ENOSYS or EPERM (Linux < 5.11, older seccomp profiles).
// Nothing above this file reads errno.
import CZeroCopyShims
import Glibc
import Synchronization

/// The result of a non-blocking call: it did something, or the kernel had no room / no data yet.
public enum IOResult<Value: Sendable>: Sendable {
    case processed(Value)
    case wouldBlock
}

extension IOResult: Equatable where Value: Equatable {}

enum Sys {
    /// Runs `body` with fault injection and errno handling. `body` gets the byte limit of an injected
    /// short count (Int.max otherwise) and returns the raw syscall result (-1 on error).
    @inline(__always)
    static func call<R: BinaryInteger & Sendable>(
        _ name: SyscallName, fd: Int32, _ body: (_ limit: Int) -> R
    ) throws(SystemError) -> IOResult<R> {
        while true {
            var limit = Int.max
            switch FaultInjection.check(name, fd: fd) {
            case .errno(let e)?:
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK || e == EINPROGRESS { return .wouldBlock }
                throw SystemError(errno: e, call: name.rawValue)
            case .shortCount(let n)?:
                limit = n
            case nil:
                break
            }
            let result = body(limit)
            if result >= 0 { return .processed(result) }
            let e = zcr_errno()
            switch e {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK, EINPROGRESS: return .wouldBlock
            case EBADF, EFAULT:
                fatalError("\(name.rawValue)(fd \(fd)) failed with unacceptable errno \(e): a bug in ZeroCopyReactor")
            default:
                throw SystemError(errno: e, call: name.rawValue)
            }
        }
    }

    /// Like `call`, for calls that never block: `.wouldBlock` is an error there.
    @inline(__always)
    static func must<R: BinaryInteger & Sendable>(_ name: SyscallName, fd: Int32 = -1, _ body: () -> R) throws(SystemError) -> R {
        switch try call(name, fd: fd, { _ in body() }) {
        case .processed(let r): return r
        case .wouldBlock: throw SystemError(errno: EAGAIN, call: name.rawValue)
        }
    }

    // MARK: descriptors

    static func socket(family: Int32) throws(SystemError) -> FileDescriptor {
        let fd = try must(.socket) { Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        return FileDescriptor(adopting: fd)
    }

    static func epollCreate() throws(SystemError) -> FileDescriptor {
        FileDescriptor(adopting: try must(.epollCreate) { zcr_epoll_create() })
    }

    static func eventfd() throws(SystemError) -> FileDescriptor {
        FileDescriptor(adopting: try must(.eventfd) { zcr_eventfd() })
    }

    /// An accepted connection: its descriptor and the peer's address.
    struct Accepted: ~Copyable {
        var descriptor: FileDescriptor
        let peer: SocketAddress
    }

    /// Accepts one connection, or nil when none is waiting.
    static func accept(_ fd: Int32) throws(SystemError) -> Accepted? {
        var storage = sockaddr_storage()
        switch try call(.accept, fd: fd, { _ in zcr_accept(fd, &storage) }) {
        case .processed(let newFD): return Accepted(descriptor: FileDescriptor(adopting: newFD), peer: SocketAddress(storage: storage))
        case .wouldBlock: return nil
        }
    }

    /// SO_LINGER {1, 0}: the close that follows sends a reset instead of a FIN (cut output must not look complete).
    static func setResetOnClose(_ fd: Int32) throws(SystemError) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = try must(.setsockopt, fd: fd) {
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        }
    }

    // MARK: sockets

    static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32) throws(SystemError) {
        var v = value
        _ = try must(.setsockopt, fd: fd) { setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) }
    }

    static func getOption(_ fd: Int32, level: Int32, name: Int32) throws(SystemError) -> Int32 {
        var v: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        _ = try must(.getsockopt, fd: fd) { getsockopt(fd, level, name, &v, &len) }
        return v
    }

    static func bind(_ fd: Int32, _ address: SocketAddress) throws(SystemError) {
        _ = try must(.bind, fd: fd) { address.withSockAddr { Glibc.bind(fd, $0, $1) } }
    }

    static func listen(_ fd: Int32, backlog: Int32) throws(SystemError) {
        _ = try must(.listen, fd: fd) { Glibc.listen(fd, backlog) }
    }

    /// Starts a non-blocking connect: `.wouldBlock` means in progress (wait for EPOLLOUT, then SO_ERROR).
    static func connect(_ fd: Int32, _ address: SocketAddress) throws(SystemError) -> IOResult<Int32> {
        try call(.connect, fd: fd) { _ in address.withSockAddr { Glibc.connect(fd, $0, $1) } }
    }

    static func localAddress(_ fd: Int32) throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try must(.getsockname, fd: fd) {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            }
        }
        return SocketAddress(storage: storage)
    }

    static func shutdownWrite(_ fd: Int32) throws(SystemError) {
        _ = try must(.shutdown, fd: fd) { Glibc.shutdown(fd, Int32(SHUT_WR)) }
    }

    // MARK: data

    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        try call(.read, fd: fd) { limit in zcr_read(fd, buffer.baseAddress, min(buffer.count, limit)) }
    }

    /// `send` of one buffer with MSG_NOSIGNAL: a closed peer is an EPIPE error, never a SIGPIPE.
    static func send(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int) throws(SystemError) -> IOResult<Int> {
        try call(.send, fd: fd) { limit in zcr_send(fd, base, min(count, limit), Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
    }

    /// `sendmsg` of a gathered write with MSG_NOSIGNAL. An injected short count trims the iovecs it hands over.
    static func sendmsg(_ fd: Int32, _ iov: UnsafeMutableBufferPointer<iovec>) throws(SystemError) -> IOResult<Int> {
        try sendmsg(fd, iov, flags: Int32(MSG_DONTWAIT))
    }

    /// sendmsg with MSG_ZEROCOPY (SO_ZEROCOPY must be on): the kernel pins the pages instead of copying, and reports
    /// on the error queue when it is done with them.
    static func sendmsgZeroCopy(_ fd: Int32, _ iov: UnsafeMutableBufferPointer<iovec>) throws(SystemError) -> IOResult<Int> {
        try sendmsg(fd, iov, flags: Int32(MSG_DONTWAIT) | zcr_msg_zerocopy())
    }

    @inline(__always)
    private static func sendmsg(
        _ fd: Int32, _ iov: UnsafeMutableBufferPointer<iovec>, flags: Int32
    ) throws(SystemError) -> IOResult<Int> {
        try call(.sendmsg, fd: fd) { limit in
            if limit == Int.max { return zcr_sendmsg(fd, iov.baseAddress, Int32(iov.count), flags) }
            // Test-only path: hand the kernel at most `limit` bytes by trimming a copy of the descriptors.
            var entries: [iovec] = []
            var left = limit
            for v in iov where left > 0 {
                let n = min(v.iov_len, left)
                entries.append(iovec(iov_base: v.iov_base, iov_len: n))
                left -= n
            }
            return entries.withUnsafeBufferPointer { zcr_sendmsg(fd, $0.baseAddress, Int32($0.count), flags) }
        }
    }

    /// sendfile of at most `count` bytes of `file` from `offset` to the socket. An injected short count sends less.
    static func sendfile(_ fd: Int32, from file: Int32, offset: Int64, count: Int) throws(SystemError) -> IOResult<Int> {
        try call(.sendfile, fd: fd) { limit in
            var at = offset
            return zcr_sendfile(fd, file, &at, min(count, limit))
        }
    }

    /// SO_ZEROCOPY on a socket (needed before any MSG_ZEROCOPY send).
    static func enableZeroCopy(_ fd: Int32) throws(SystemError) {
        _ = try must(.setsockopt, fd: fd) { zcr_set_zerocopy(fd) }
    }

    /// One message of the socket's error queue: a zero-copy completion, `.other` for anything else, nil when the
    /// queue is empty.
    enum ErrorQueueMessage: Equatable {
        case zeroCopy(low: UInt32, high: UInt32, copied: Bool)
        case other(errno: Int32)
    }

    static func readErrorQueue(_ fd: Int32) throws(SystemError) -> ErrorQueueMessage? {
        var low: UInt32 = 0, high: UInt32 = 0
        var copied: Int32 = 0, other: Int32 = 0
        switch try call(.recvErrorQueue, fd: fd, { _ in zcr_recv_zerocopy(fd, &low, &high, &copied, &other) }) {
        case .wouldBlock: return nil
        case .processed(1): return .zeroCopy(low: low, high: high, copied: copied != 0)
        case .processed: return .other(errno: other)
        }
    }

    /// Disconnects a TCP socket now, keeping the descriptor (connect with AF_UNSPEC): the peer gets a reset when
    /// anything was unsent or unread, and the error queue stays readable.
    static func disconnect(_ fd: Int32) throws(SystemError) {
        _ = try must(.connect, fd: fd) { zcr_disconnect(fd) }
    }

    // MARK: epoll and eventfd

    static func epollControl(_ epfd: Int32, _ op: Int32, _ fd: Int32, events: UInt32, data: UInt64) throws(SystemError) {
        _ = try must(.epollCtl, fd: fd) { zcr_epoll_ctl(epfd, op, fd, events, data) }
    }

    /// Which call the loops wait with. Decided by the first wait and then sticky for the whole process: every loop
    /// shares one kernel, so what one loop learnt holds for all.
    enum EpollWaitFlavor: UInt8, Sendable, CustomStringConvertible {
        /// No wait has returned yet; the next one tries epoll_pwait2.
        case undetected
        /// epoll_pwait2 worked: timeouts are exact to the nanosecond.
        case pwait2
        /// epoll_pwait2 answered ENOSYS or EPERM: epoll_wait, timeouts rounded up to whole milliseconds.
        case plain

        var description: String {
            switch self {
            case .undetected: return "undetected"
            case .pwait2: return SyscallName.epollPwait2.rawValue
            case .plain: return SyscallName.epollWait.rawValue
            }
        }
    }

    // Relaxed on both sides: the flavor only picks which of two correct calls to make, and it publishes no other
    // memory. `.plain` is final (stored unconditionally); `.pwait2` is only ever stored over `.undetected`, so a
    // loop whose epoll_pwait2 succeeded just before another's failed cannot undo the fallback.
    private static let flavor = Atomic<UInt8>(EpollWaitFlavor.undetected.rawValue)

    /// The wait in use (for tests and logs).
    static var epollWaitFlavor: EpollWaitFlavor { EpollWaitFlavor(rawValue: flavor.load(ordering: .relaxed))! }

    /// Forgets the detection, so the next wait tries epoll_pwait2 again. Tests only: a real kernel does not grow it.
    static func resetEpollDetection() {
        flavor.store(EpollWaitFlavor.undetected.rawValue, ordering: .relaxed)
    }

    /// Waits at most `timeoutNanos` (negative: forever) for events; returns how many were stored in `events`.
    /// EINTR counts as a timeout (0 events): the loop recomputes its timeout and waits again.
    static func epollWait(
        _ epfd: Int32, _ events: UnsafeMutableBufferPointer<zcr_epoll_event>, timeoutNanos: Int64
    ) throws(SystemError) -> Int {
        if flavor.load(ordering: .relaxed) != EpollWaitFlavor.plain.rawValue {
            do {
                let result = try call(.epollPwait2, fd: epfd) { _ in
                    zcr_epoll_pwait2(epfd, events.baseAddress, Int32(events.count), timeoutNanos)
                }
                _ = flavor.compareExchange(
                    expected: EpollWaitFlavor.undetected.rawValue, desired: EpollWaitFlavor.pwait2.rawValue,
                    ordering: .relaxed)
                switch result {
                case .processed(let n): return Int(n)
                case .wouldBlock: return 0
                }
            } catch where error.errno == ENOSYS || error.errno == EPERM {
                flavor.store(EpollWaitFlavor.plain.rawValue, ordering: .relaxed)
            }
        }
        let ms = epollMilliseconds(timeoutNanos)
        let result = try call(.epollWait, fd: epfd) { _ in
            zcr_epoll_wait_ms(epfd, events.baseAddress, Int32(events.count), ms)
        }
        switch result {
        case .processed(let n): return Int(n)
        case .wouldBlock: return 0
        }
    }

    /// epoll_wait's timeout for a wait of `nanos`: rounded UP to whole milliseconds, so a timer never fires early
    /// (and timers due in one millisecond keep their order); 0 stays 0 (poll), negative is -1 (forever), and a wait
    /// longer than Int32.max ms (24.8 days) is cut to that, after which the loop recomputes and waits again.
    static func epollMilliseconds(_ nanos: Int64) -> Int32 {
        if nanos < 0 { return -1 }
        let ms = nanos / 1_000_000 + (nanos % 1_000_000 == 0 ? 0 : 1)
        return Int32(clamping: ms)
    }

    static func eventfdWrite(_ fd: Int32) {
        var one: UInt64 = 1
        // EAGAIN means the counter is saturated: the loop is already due to wake. Nothing else can fail here.
        _ = try? call(.eventfd, fd: fd) { _ in Glibc.write(fd, &one, 8) }
    }

    static func eventfdDrain(_ fd: Int32) {
        var value: UInt64 = 0
        _ = try? call(.eventfd, fd: fd) { _ in Glibc.read(fd, &value, 8) }
    }

    static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
