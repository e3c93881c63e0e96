// Settings of a reactor pool, checked once at start. Plain values; nothing here runs.
public import Logging
import Synchronization

public struct ReactorConfiguration: Sendable {
    /// Number of loops (threads). Default: one per core.
    public var loops: Int
    /// Pending bytes at which a connection becomes unwritable (default 64 KiB).
    public var highWatermark = 64 * 1024
    /// Pending bytes at which it becomes writable again (default 32 KiB).
    public var lowWatermark = 32 * 1024
    /// If set, writes that would take the pending bytes past this fail with `.writeBufferFull`.
    public var writeBufferHardCap: Int?
    /// Size of each loop's read buffers (default 64 KiB). A slice retained from a read holds its whole buffer.
    public var readBufferSize = 64 * 1024
    /// Bytes of read buffers per loop that retained slices may hold (default 64 MiB). Above it the loop pauses
    /// reading on the connections holding the most retained bytes, largest first, and resumes them once the held
    /// memory is back under half the budget (or their own share is gone). Nothing is copied to get there.
    public var readMemoryBudget = 64 * 1024 * 1024
    /// Free read buffers each loop keeps for reuse at least (default 16). While slices hold more buffers than that, the
    /// loop keeps as many free as are held (the working set, at most the budget's worth), so buffers that come back
    /// in bursts are reused instead of freed and allocated again; the surplus is freed once less is held.
    public var readBuffersKeptFree = 16
    /// Accepted connections open at once in the whole pool; beyond it new ones are closed at once and counted in
    /// `LoopCounters.connectionsRefused` (nil: no limit but the descriptor limit, where accept pauses on EMFILE).
    public var maxConnections: Int?
    /// Time bounds of every connection (each can be changed per connection with `Connection.setTimeouts`).
    public var timeouts = ConnectionTimeouts()
    /// Syscalls a flush may make before the loop serves its other connections (default 16).
    public var writeSpinBudget = 16
    /// Checks that every iovec handed to the kernel lies inside memory a caller appended (for `zcr profile`).
    public var verifyIovecs = false
    /// Send calls of at least this many bytes ask the kernel for MSG_ZEROCOPY (nil, the default: never). The kernel
    /// then sends from the slices' pages instead of copying them into the socket buffer, and the slices are
    /// released only when its completion arrives, which is later than `sliceWritten`: memory may be reused after
    /// `sliceReleased`, never after `sliceWritten`. It pays between hosts above about 10 KB; on loopback and veth
    /// the kernel copies anyway and says so (`FlushStats.zeroCopyCopied`), and the connection stops asking after the
    /// first such completion, as it does after ENOBUFS (whose send is made again at once without the flag).
    /// Per connection: `Connection.setZeroCopyThreshold`.
    public var zeroCopyThreshold: Int?
    /// How long a connection that ended with MSG_ZEROCOPY completions pending keeps its descriptor and slices while
    /// waiting for them (default 5 s). At the deadline the slices are released anyway and counted in
    /// `LoopCounters.zeroCopyDeadlineReleases`.
    public var zeroCopyCompletionDeadlineNanos: UInt64 = 5_000_000_000
    /// A deliberate copy before every send (see `CopyControl`): only for showing that `zcr profile` catches copies.
    @_spi(CopyControl) public var copyControl: CopyControl?
    /// SO_SNDBUF for every connection (nil: the kernel's default and autotuning).
    public var socketSendBuffer: Int32?
    /// SO_RCVBUF for every connection (nil: the kernel's default and autotuning).
    public var socketReceiveBuffer: Int32?
    /// Opt-in to sharing a listening port, through SO_REUSEPORT, with other processes or pools of the same user: the
    /// kernel then spreads new connections over all of them. By default (false) `ReactorPool.listen` on a non-zero
    /// port first checks that no other socket holds the port and fails with EADDRINUSE if one does.
    public var sharePortWithOtherProcesses = false
    /// listen(2) backlog per loop.
    public var backlog: Int32 = 4096
    /// Client connects that take longer fail with `.connectTimeout` (nanoseconds; nil: no limit).
    public var connectTimeoutNanos: UInt64? = 10_000_000_000

    /// Where the pool logs (start, listen, shutdown, accept trouble, connection errors at debug level).
    /// The library never configures logging and never logs on the read or write path; by default it logs nowhere.
    public var logger = Logger(label: "ZeroCopyReactor", factory: { _ in SwiftLogNoOpLogHandler() })
    /// How often each loop reports its counters to swift-metrics (nanoseconds; nil: never).
    public var metricsIntervalNanos: UInt64? = 1_000_000_000

    public init(loops: Int = ReactorConfiguration.defaultLoops) {
        self.loops = loops
    }

    public static var defaultLoops: Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    func validate() throws(ReactorError) {
        guard loops >= 1 && loops <= 1024 else { throw .invalidArgument("loops must be 1...1024, not \(loops)") }
        guard lowWatermark >= 0 && lowWatermark < highWatermark else {
            throw .invalidArgument("low watermark \(lowWatermark) must be below the high watermark \(highWatermark)")
        }
        if let cap = writeBufferHardCap, cap < highWatermark {
            throw .invalidArgument("hard cap \(cap) must be at least the high watermark \(highWatermark)")
        }
        guard readBufferSize >= 1024 else { throw .invalidArgument("read buffer size must be at least 1024") }
        guard readMemoryBudget >= readBufferSize else {
            throw .invalidArgument("read memory budget \(readMemoryBudget) must be at least one read buffer (\(readBufferSize))")
        }
        guard readBuffersKeptFree >= 0 else { throw .invalidArgument("read buffers kept free must not be negative") }
        if let max = maxConnections, max < 1 { throw .invalidArgument("max connections must be at least 1, not \(max)") }
        try timeouts.validate()
        guard writeSpinBudget >= 1 else { throw .invalidArgument("write spin budget must be at least 1") }
        if let t = zeroCopyThreshold, t < 1 { throw .invalidArgument("zero-copy threshold must be at least 1 byte, not \(t)") }
    }
}

import Glibc

/// How long a connection may go without progress. Each bound ends the connection with its own typed error.
public struct ConnectionTimeouts: Sendable, Equatable {
    /// Nothing read or written for this long: closed gracefully with `.idleTimeout` (nothing is owed; default:
    /// none, since idle keep-alive connections are normal for many protocols).
    public var idle: Duration?
    /// Bytes pending and none taken by the kernel for this long: aborted (reset) with `.writeStalled`
    /// (default 60 s). This is what ends a peer that stops reading.
    public var writeStall: Duration?
    /// A graceful close or half-close asked for and not finished after this long: aborted (reset) with
    /// `.closeTimeout` (default 30 s).
    public var close: Duration?

    public init(idle: Duration? = nil, writeStall: Duration? = .seconds(60), close: Duration? = .seconds(30)) {
        self.idle = idle
        self.writeStall = writeStall
        self.close = close
    }

    /// Bounds in nanoseconds, for the loop.
    var idleNanos: UInt64? { idle.map(Self.nanos) }
    var writeStallNanos: UInt64? { writeStall.map(Self.nanos) }
    var closeNanos: UInt64? { close.map(Self.nanos) }
    /// The smallest bound set, which paces the loop's sweep.
    var smallestNanos: UInt64? { [idleNanos, writeStallNanos, closeNanos].compactMap { $0 }.min() }

    static func nanos(_ d: Duration) -> UInt64 {
        let (s, a) = d.components
        return UInt64(max(0, s)) &* 1_000_000_000 &+ UInt64(max(0, a / 1_000_000_000))
    }

    func validate() throws(ReactorError) {
        for (name, d) in [("idle", idle), ("write-stall", writeStall), ("close", close)] {
            if let d, d <= .zero { throw .invalidArgument("\(name) timeout must be positive, not \(d)") }
        }
    }
}

/// The pool-wide count of accepted connections, against `ReactorConfiguration.maxConnections`. Shared by the loops
/// (relaxed RMWs: the count guards no memory, and each increment is checked against the limit atomically).
final class ConnectionAdmission: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Takes a place, or false when the pool is full.
    func admit() -> Bool {
        if open.wrappingAdd(1, ordering: .relaxed).newValue <= limit { return true }
        open.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    func leave() { open.wrappingSubtract(1, ordering: .relaxed) }
}
