// The self-test: known work (N allocations of one size, then their frees) measured with the profiler's own readers on
// a thread of its own (exact in any build) and on a reactor loop through ReactorMeter (exact in release builds).
// It measures only; the tests decide whether the figures are right.
import Glibc
import ZeroCopyReactor

/// Bytes and requests one measured step moved.
public struct KnownWorkFigures: Sendable, Equatable {
    public var allocatedBytes: UInt64?
    public var allocations: UInt64?
    public var deallocatedBytes: UInt64?
}

/// What the readers saw for known work.
public struct KnownWorkResult: Sendable {
    public var allocator: AllocatorInfo
    public var count: Int
    public var byteCount: Int
    /// The allocator's usable size for one block (counters count usable sizes: malloc(100) counts 112).
    public var usableBytes: Int
    /// On a thread of its own: the allocations, then the frees (their `deallocatedBytes`).
    public var thread: KnownWorkFigures?
    public var threadFrees: KnownWorkFigures?
    /// On a reactor loop, through two flushed snapshots each: nothing, the allocations, the frees.
    public var loopIdle: KnownWorkFigures
    public var loop: KnownWorkFigures
    public var loopFrees: KnownWorkFigures

    public func json() -> String {
        func figures(_ f: KnownWorkFigures?) -> JSONValue {
            guard let f else { return .null }
            return .object([
                ("allocated_bytes", .of(f.allocatedBytes)), ("allocations", .of(f.allocations)),
                ("deallocated_bytes", .of(f.deallocatedBytes)),
            ])
        }
        return JSONValue.object([
            ("allocator", .string(allocator.name)), ("jemalloc", .bool(allocator.isJemalloc)),
            ("statistics", .bool(allocator.statisticsAvailable)), ("version", .of(allocator.version)),
            ("count", .int(count)), ("byte_count", .int(byteCount)), ("usable_bytes", .int(usableBytes)),
            ("thread", figures(thread)), ("thread_frees", figures(threadFrees)),
            ("loop_idle", figures(loopIdle)), ("loop", figures(loop)), ("loop_frees", figures(loopFrees)),
        ]).render()
    }
}

public enum KnownWork {
    /// Runs the known work on its own thread, then on the loop of a one-loop pool.
    public static func run(count: Int, byteCount: Int) throws(ProfileError) -> KnownWorkResult {
        precondition(count >= 1 && byteCount >= 1)
        let table = Table(count: count, byteCount: byteCount)
        defer { table.pointers.deallocate() }
        let allocator = AllocatorInfo.detect()
        let mallctl = allocator.statisticsAvailable ? Mallctl.find() : nil
        let own: (KnownWorkFigures, KnownWorkFigures)? = mallctl.flatMap { m in
            PosixThread.run { onThisThread(table, m) }
        }

        let pool: ReactorPool
        var configuration = ReactorConfiguration(loops: 1)
        configuration.metricsIntervalNanos = nil  // its timer allocates on the loop once a second
        do { pool = try ReactorPool(configuration: configuration) } catch {
            throw .setup("cannot start a loop: \(error)")
        }
        defer { pool.shutdown() }
        let meter = ReactorMeter(pool: pool)
        let loop = pool.loops[0]
        // Once unmeasured, so first-use costs (the loop's node pool, metadata, cache refills) stay out of the figures.
        _ = loop.submitAndWait(table.allocate)
        _ = loop.submitAndWait(table.release)
        _ = meter.snapshot(flushThreadCaches: true)

        let idleA = meter.snapshot(flushThreadCaches: true)
        let idleB = meter.snapshot(flushThreadCaches: true)
        let a = meter.snapshot(flushThreadCaches: true)
        _ = loop.submitAndWait(table.allocate)
        let b = meter.snapshot(flushThreadCaches: true)
        _ = loop.submitAndWait(table.release)
        let c = meter.snapshot(flushThreadCaches: true)

        func figures(_ x: MeterSnapshot, _ y: MeterSnapshot) -> KnownWorkFigures {
            let w = WindowFigures(start: x, end: y, durationNanos: 0, writes: 0, peakRSS: nil)
            return KnownWorkFigures(
                allocatedBytes: w.reactorBytesAllocated, allocations: w.reactorAllocations,
                deallocatedBytes: w.reactorBytesDeallocated)
        }
        return KnownWorkResult(
            allocator: allocator, count: count, byteCount: byteCount, usableBytes: usableSize(byteCount),
            thread: own?.0, threadFrees: own?.1,
            loopIdle: figures(idleA, idleB), loop: figures(a, b), loopFrees: figures(b, c))
    }

    /// On the calling thread, which nothing else uses: its own arena, then flush-read steps around the work.
    private static func onThisThread(_ table: Table, _ m: Mallctl) -> (KnownWorkFigures, KnownWorkFigures)? {
        guard let arena = m.assignDedicatedArena(), let counters = ThreadCounterPointers.current(m) else { return nil }
        let names = ArenaRequestNames(arena: arena)
        func mark() -> (allocated: UInt64, deallocated: UInt64, requests: UInt64?) {
            m.flushThreadCache()
            let (a, d) = counters.read()
            return (a, d, m.refreshStatistics() ? m.arenaRequests(names) : nil)
        }
        // Once unmeasured: first calls may set up runtime caches.
        table.allocate()
        table.release()
        _ = mark()
        let s0 = mark()
        table.allocate()
        let s1 = mark()
        table.release()
        let s2 = mark()
        func requests(_ x: UInt64?, _ y: UInt64?) -> UInt64? { x.flatMap { x in y.map { $0 &- x } } }
        return (
            KnownWorkFigures(
                allocatedBytes: s1.allocated &- s0.allocated, allocations: requests(s0.requests, s1.requests),
                deallocatedBytes: s1.deallocated &- s0.deallocated),
            KnownWorkFigures(
                allocatedBytes: s2.allocated &- s1.allocated, allocations: requests(s1.requests, s2.requests),
                deallocatedBytes: s2.deallocated &- s1.deallocated)
        )
    }

    /// The allocator's usable size for a request (`malloc_usable_size`, looked up like mallctl: whichever malloc
    /// runs answers). 0 if it is missing.
    static func usableSize(_ byteCount: Int) -> Int {
        typealias UsableSize = @convention(c) (UnsafeMutableRawPointer?) -> Int
        guard let symbol = dlsym(nil, "malloc_usable_size") else { return 0 }
        let f = unsafeBitCast(symbol, to: UsableSize.self)
        let p = malloc(byteCount)
        defer { free(p) }
        return f(p)
    }

    /// The blocks of the known work; the pointer table is allocated by the caller before anything is measured.
    private final class Table: @unchecked Sendable {
        let pointers: UnsafeMutablePointer<UnsafeMutableRawPointer?>
        let count: Int
        let byteCount: Int

        init(count: Int, byteCount: Int) {
            self.count = count
            self.byteCount = byteCount
            pointers = .allocate(capacity: count)
            pointers.initialize(repeating: nil, count: count)
        }

        @Sendable func allocate() {
            var i = 0
            while i < count {
                let p = malloc(byteCount)
                p?.storeBytes(of: UInt8(truncatingIfNeeded: i), as: UInt8.self)  // touched: cannot be elided
                pointers[i] = p
                i += 1
            }
        }

        @Sendable func release() {
            var i = 0
            while i < count {
                free(pointers[i])
                pointers[i] = nil
                i += 1
            }
        }
    }
}
