// Settings of a reactor pool, checked once at start. Plain values; nothing here runs.
public import Logging

public struct ReactorConfiguration: Sendable {
    /// Number of loops (threads). Default: one per core.
    public var loops: Int
    /// Pending bytes at which a connection becomes unwritable (default 64 KiB).
    public var highWatermark = 64 * 1024
    /// Pending bytes at which it becomes writable again (default 32 KiB).
    public var lowWatermark = 32 * 1024
    /// If set, writes that would take the pending bytes past this fail with `.writeBufferFull`.
    public var writeBufferHardCap: Int?
    /// Size of each loop's read buffers (default 64 KiB).
    public var readBufferSize = 64 * 1024
    /// Syscalls a flush may make before the loop serves its other connections (default 16).
    public var writeSpinBudget = 16
    /// Checks that every iovec handed to the kernel lies inside memory a caller appended (for `zcr profile`).
    public var verifyIovecs = false
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
        guard writeSpinBudget >= 1 else { throw .invalidArgument("write spin budget must be at least 1") }
    }
}

import Glibc
