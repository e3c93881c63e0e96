// The measured window: the difference of two meter snapshots, per reactor thread and in total, plus the peak RSS
// growth inside the window. Arithmetic only; a total is nil as soon as one of its parts is unknown.
public import ZeroCopyReactor

/// One reactor thread over the window.
public struct ThreadFigures: Sendable {
    public var loop: Int
    public var threadID: Int32
    public var arena: UInt32?
    public var allocatedBytes: UInt64?
    public var deallocatedBytes: UInt64?
    public var allocations: UInt64?
    public var bytesWritten: Int
    public var bytesRead: Int
    public var reads: Int
    public var write: FlushStats
    public var bytesCopied: Int
    public var wakeups: Int
    public var iterations: Int
    /// Bytes memcpy'd and memmove'd by this thread in calls at or above the counter's threshold, and those calls
    /// (nil without the memcpy counter).
    public var memcpyBytes: UInt64? = nil
    public var memcpyCalls: UInt64? = nil
    /// Read-buffer memory the loop holds for slices at the window's end (a level, not a delta).
    public var readBytesHeld: Int = 0
}

/// Everything measured between the window's two edges.
public struct WindowFigures: Sendable {
    public var durationNanos: UInt64
    public var threads: [ThreadFigures]
    /// Connection.write calls the scenario made in the window.
    public var writes: Int
    /// VmRSS when the window opened, and the peak of VmRSS inside the window (nil if it could not be isolated).
    public var rssAtStart: Int?
    public var peakRSS: Int?
    public var heapAtStart: HeapStats?
    public var heapAtEnd: HeapStats?
    /// Bytes the driver thread allocated in the window (context only; not part of the reactor figures).
    public var driverAllocatedBytes: UInt64?
    /// Allocations of the whole process in the window (every thread, Swift concurrency's included); nil unless
    /// thread caches were off (MALLOC_CONF=tcache:false), the only way the count is exact.
    public var processAllocations: UInt64?

    /// `end - start`, loop by loop. `peakRSS` comes from the caller, who reset VmHWM at the start.
    public init(start: MeterSnapshot, end: MeterSnapshot, durationNanos: UInt64, writes: Int, peakRSS: Int?) {
        self.durationNanos = durationNanos
        self.writes = writes
        rssAtStart = start.memory?.rss
        self.peakRSS = peakRSS
        heapAtStart = start.heap
        heapAtEnd = end.heap
        driverAllocatedBytes = Self.minus(end.driverAllocatedBytes, start.driverAllocatedBytes)
        processAllocations = Self.minus(end.processRequests, start.processRequests)
        threads = zip(start.loops, end.loops).map { a, b in
            let w = b.counters.write - a.counters.write
            return ThreadFigures(
                loop: b.loop, threadID: b.threadID, arena: b.arena,
                allocatedBytes: Self.minus(b.allocatedBytes, a.allocatedBytes),
                deallocatedBytes: Self.minus(b.deallocatedBytes, a.deallocatedBytes),
                allocations: Self.minus(b.requests, a.requests),
                bytesWritten: w.bytesWritten, bytesRead: b.counters.bytesRead - a.counters.bytesRead,
                reads: b.counters.reads - a.counters.reads, write: w,
                bytesCopied: b.counters.bytesCopied - a.counters.bytesCopied,
                wakeups: b.counters.wakeups - a.counters.wakeups,
                iterations: b.counters.iterations - a.counters.iterations,
                memcpyBytes: Self.minus(b.memcpy?.bytes, a.memcpy?.bytes),
                memcpyCalls: Self.minus(b.memcpy?.calls, a.memcpy?.calls), readBytesHeld: b.counters.readBytesHeld)
        }
    }

    public init(durationNanos: UInt64, threads: [ThreadFigures], writes: Int) {
        self.durationNanos = durationNanos
        self.threads = threads
        self.writes = writes
    }

    /// Counters are cumulative and only grow; wrapping subtraction is exact even if one wrapped.
    private static func minus(_ b: UInt64?, _ a: UInt64?) -> UInt64? {
        guard let a, let b else { return nil }
        return b &- a
    }

    private func total(_ part: (ThreadFigures) -> UInt64?) -> UInt64? {
        var sum: UInt64 = 0
        for t in threads {
            guard let v = part(t) else { return nil }
            sum &+= v
        }
        return threads.isEmpty ? nil : sum
    }

    public var bytesSent: Int { threads.reduce(0) { $0 + $1.bytesWritten } }
    public var bytesRead: Int { threads.reduce(0) { $0 + $1.bytesRead } }
    public var reactorBytesAllocated: UInt64? { total(\.allocatedBytes) }
    public var reactorBytesDeallocated: UInt64? { total(\.deallocatedBytes) }
    public var reactorAllocations: UInt64? { total(\.allocations) }
    public var bytesCopied: Int { threads.reduce(0) { $0 + $1.bytesCopied } }
    public var reactorMemcpyBytes: UInt64? { total(\.memcpyBytes) }
    public var reactorMemcpyCalls: UInt64? { total(\.memcpyCalls) }
    public var readBytesHeld: Int { threads.reduce(0) { $0 + $1.readBytesHeld } }
    public var verifiedIovecs: Int { threads.reduce(0) { $0 + $1.write.verifiedIovecs } }
    public var foreignIovecs: Int { threads.reduce(0) { $0 + $1.write.foreignIovecs } }
    public var sendCalls: Int { threads.reduce(0) { $0 + $1.write.sendCalls } }
    public var sendmsgCalls: Int { threads.reduce(0) { $0 + $1.write.sendmsgCalls } }
    public var syscalls: Int { sendCalls + sendmsgCalls }
    public var slicesWritten: Int { threads.reduce(0) { $0 + $1.write.slicesWritten } }
    public var partialWrites: Int { threads.reduce(0) { $0 + $1.write.partialWrites } }
    public var sendfileCalls: Int { threads.reduce(0) { $0 + $1.write.sendfileCalls } }
    public var sendfileBytes: Int { threads.reduce(0) { $0 + $1.write.sendfileBytes } }
    /// MSG_ZEROCOPY: sends and bytes, completions, and how many of those the kernel copied anyway.
    public var zeroCopySends: Int { threads.reduce(0) { $0 + $1.write.zeroCopySends } }
    public var zeroCopyBytes: Int { threads.reduce(0) { $0 + $1.write.zeroCopyBytes } }
    public var zeroCopyCompletions: Int { threads.reduce(0) { $0 + $1.write.zeroCopyCompletions } }
    public var zeroCopyCopied: Int { threads.reduce(0) { $0 + $1.write.zeroCopyCopied } }
    public var zeroCopyFallbacks: Int { threads.reduce(0) { $0 + $1.write.zeroCopyFallbacks } }
    /// Bytes a copy control staged before sending (the core's own count of its deliberate copies).
    public var stagedBytes: Int { threads.reduce(0) { $0 + $1.write.stagedBytes } }
    public var wouldBlocks: Int { threads.reduce(0) { $0 + $1.write.wouldBlocks } }

    public var seconds: Double { Double(durationNanos) / 1e9 }

    /// The headline: bytes the reactor threads allocated per byte they sent.
    public var allocatedBytesPerByteSent: Double? {
        guard let a = reactorBytesAllocated, bytesSent > 0 else { return nil }
        return Double(a) / Double(bytesSent)
    }

    /// Bytes memcpy'd on the reactor threads per byte they sent.
    public var memcpyBytesPerByteSent: Double? {
        guard let m = reactorMemcpyBytes, bytesSent > 0 else { return nil }
        return Double(m) / Double(bytesSent)
    }

    public var allocationsPerWrite: Double? {
        guard let n = reactorAllocations, writes > 0 else { return nil }
        return Double(n) / Double(writes)
    }

    public var processAllocationsPerWrite: Double? {
        guard let n = processAllocations, writes > 0 else { return nil }
        return Double(n) / Double(writes)
    }

    public var peakRSSGrowth: Int? {
        guard let peak = peakRSS, let start = rssAtStart else { return nil }
        return max(0, peak - start)
    }

    public var throughputBytesPerSecond: Double? {
        durationNanos > 0 ? Double(bytesSent) / seconds : nil
    }

    public var slicesPerCall: Double { syscalls == 0 ? 0 : Double(slicesWritten) / Double(syscalls) }
}
