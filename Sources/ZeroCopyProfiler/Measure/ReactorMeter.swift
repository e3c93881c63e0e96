import CZeroCopyShims
// Reads every reactor (loop) thread of a pool on that thread itself: its jemalloc byte counters, its dedicated
// arena's request count after flushing its own thread cache, and the loop counters. Snapshots only; after set-up it
// must never allocate on a loop thread, and never report a figure it could not read exactly (those are nil).
public import ZeroCopyReactor

/// One loop thread, as set up for measurement.
struct LoopProbe: Sendable {
    var loop: Int
    var threadID: Int32
    var arena: ArenaRequestNames?
    var counters: ThreadCounterPointers?
    var memcpy: MemcpySlot?
}

/// One loop thread at one moment. Cumulative values; subtract two snapshots for a window.
public struct LoopReading: Sendable {
    public var loop: Int
    public var threadID: Int32
    /// The thread's own arena (nil when jemalloc is absent or arenas cannot be created).
    public var arena: UInt32?
    public var allocatedBytes: UInt64?
    public var deallocatedBytes: UInt64?
    /// Allocation requests of the thread's arena; only read after the thread flushed its cache, else nil.
    public var requests: UInt64?
    public var counters: LoopCounters
    /// The thread's memcpy/memmove counts (nil when the memcpy counter is not in the process).
    public var memcpy: MemcpySlot.Counts? = nil
}

/// Every loop of a pool, plus process-wide levels, at one moment.
public struct MeterSnapshot: Sendable {
    /// Monotonic nanoseconds (`EventLoop.now()`) when the snapshot began.
    public var nanos: UInt64
    public var loops: [LoopReading]
    /// The calling (driver) thread's byte counters, for context: not part of the reactor figures.
    public var driverAllocatedBytes: UInt64?
    public var heap: HeapStats?
    public var memory: ProcessMemory?
    /// Allocation requests of the whole process (every arena). Exact only without thread caches
    /// (MALLOC_CONF=tcache:false), since other threads' caches cannot be flushed from here; nil otherwise.
    public var processRequests: UInt64?
}

/// Measures a running pool's reactor threads. Create it before the traffic you want to measure.
public final class ReactorMeter: Sendable {
    public let pool: ReactorPool
    public let allocator: AllocatorInfo
    /// The memcpy counter, when the process has one (zcr links it; other servers preload it).
    public let memcpyCounter: MemcpyCounter?
    let mallctl: Mallctl?
    let probes: [LoopProbe]
    /// `stats.arenas.<all>` request counters, read only when thread caches are off.
    let allArenas: ArenaRequestNames?

    /// Sets up every loop thread: finds its counters and, with `dedicatedArenas`, gives it an arena of its own
    /// (needed for exact allocation counts; without it `requests` stays nil).
    public init(pool: ReactorPool, dedicatedArenas: Bool = true) {
        self.pool = pool
        let instruments = ProcessInstruments.detect()
        (allocator, mallctl, memcpyCounter) = (instruments.allocator, instruments.mallctl, instruments.memcpyCounter)
        // 4096 is MALLCTL_ARENAS_ALL: the sum over every arena.
        allArenas = instruments.requestCountsCanBeExact ? ArenaRequestNames(arena: 4096) : nil
        probes = pool.loops.map { loop in
            let index = loop.index
            let probe = loop.submitAndWait { () -> LoopProbe in
                let arena = instruments.dedicatedArena(dedicatedArenas)
                return LoopProbe(
                    loop: index, threadID: zcr_thread_id(), arena: arena,
                    counters: instruments.threadCounters(), memcpy: instruments.memcpySlot())
            }
            guard let probe else { preconditionFailure("loop \(index) stopped before the meter was set up") }
            return probe
        }
    }

    /// Reads every loop on its thread. With `flushThreadCaches`, each loop first flushes its own thread cache so
    /// that its arena's request count is complete (cost ~2 µs per loop: for window edges, not every sample).
    public func snapshot(flushThreadCaches: Bool = false) -> MeterSnapshot {
        let start = EventLoop.now()
        let m = mallctl
        var readings: [LoopReading] = []
        for (loop, probe) in zip(pool.loops, probes) {
            let values = loop.submitAndWait { () -> (UInt64, UInt64)? in
                if flushThreadCaches { m?.flushThreadCache() }
                guard let pointers = probe.counters else { return nil }
                let (a, d) = pointers.read()
                return (a, d)
            }
            readings.append(
                LoopReading(
                    loop: probe.loop, threadID: probe.threadID, arena: probe.arena?.arena,
                    allocatedBytes: values??.0, deallocatedBytes: values??.1, requests: nil, counters: LoopCounters()))
        }
        let counters = pool.counters()
        for i in readings.indices where i < counters.count { readings[i].counters = counters[i] }
        for i in readings.indices { readings[i].memcpy = probes[i].memcpy?.read() }
        var snapshot = MeterSnapshot(nanos: start, loops: readings)
        if let m {
            // One `epoch` write refreshes both the levels and the arenas' request counts (merged by the flushes above).
            let refreshed = m.refreshStatistics()
            snapshot.heap = refreshed ? m.heapStats(refresh: false) : nil
            if flushThreadCaches && refreshed {
                for i in snapshot.loops.indices {
                    snapshot.loops[i].requests = probes[i].arena.flatMap { m.arenaRequests($0) }
                }
            }
            snapshot.driverAllocatedBytes = ThreadCounterPointers.current(m)?.read().allocated
            if refreshed, let all = allArenas { snapshot.processRequests = m.arenaRequests(all) }
        }
        snapshot.memory = ProcessMemory.read()
        return snapshot
    }
}

extension MeterSnapshot {
    init(nanos: UInt64, loops: [LoopReading]) {
        self.nanos = nanos
        self.loops = loops
    }

    /// Bytes the reactor threads allocated since they started (nil if any thread's counter is unavailable).
    public var reactorAllocatedBytes: UInt64? {
        loops.reduce(UInt64(0) as UInt64?) { sum, r in sum.flatMap { s in r.allocatedBytes.map { s &+ $0 } } }
    }

    public var bytesWritten: Int { loops.reduce(0) { $0 + $1.counters.write.bytesWritten } }
    public var bytesCopied: Int { loops.reduce(0) { $0 + $1.counters.bytesCopied } }

    /// Bytes memcpy'd and memmove'd on the reactor threads (nil without the memcpy counter).
    public var reactorMemcpyBytes: UInt64? {
        loops.reduce(UInt64(0) as UInt64?) { sum, r in sum.flatMap { s in r.memcpy.map { s &+ $0.bytes } } }
    }
}

/// What the profiler can read in this process, found once: the allocator, jemalloc's mallctl (when its statistics are
/// on) and the memcpy counter (when linked in or preloaded). Shared by the in-process meter and the live one.
struct ProcessInstruments: Sendable {
    let allocator: AllocatorInfo
    let mallctl: Mallctl?
    let memcpyCounter: MemcpyCounter?

    static func detect() -> ProcessInstruments {
        let allocator = AllocatorInfo.detect()
        return ProcessInstruments(
            allocator: allocator, mallctl: allocator.statisticsAvailable ? Mallctl.find() : nil,
            memcpyCounter: MemcpyCounter.find())
    }

    /// Allocation request counts can be exact: jemalloc with statistics, and no thread caches.
    var requestCountsCanBeExact: Bool { mallctl != nil && allocator.threadCache == false }

    /// On the calling thread: jemalloc's per-thread allocated/deallocated counters, and its memcpy counter slot.
    func threadCounters() -> ThreadCounterPointers? { mallctl.flatMap { ThreadCounterPointers.current($0) } }
    func memcpySlot() -> MemcpySlot? { memcpyCounter?.currentThread() }

    /// On a loop thread: gives it an arena of its own, if `wanted` and possible, and names its request counters.
    func dedicatedArena(_ wanted: Bool) -> ArenaRequestNames? {
        guard wanted else { return nil }
        return mallctl?.assignDedicatedArena().map { ArenaRequestNames(arena: $0) }
    }
}
