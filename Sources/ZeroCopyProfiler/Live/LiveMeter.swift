// Reads a running pool's reactor threads from ANOTHER thread, without putting any work on the loops: the loops'
// published counters, their jemalloc byte counters and memcpy slots through pointers captured once on each loop
// thread, and process-wide levels. What the profiling endpoint serves. After set-up it never runs anything on a
// loop, and a figure it cannot read exactly is nil.
import CZeroCopyShims
import Glibc
import Synchronization
public import ZeroCopyReactor

/// Whether a thread still runs, told by a destructor of a thread-specific key that runs on that thread as it exits
/// (before its thread-local storage, where jemalloc keeps the counters, is freed).
///
/// Invariant: a pointer into a thread's thread-local storage is read only inside `whileAlive`, whose lock the
/// exiting thread takes to mark itself ended, so no read overlaps the thread's exit.
final class ThreadLife: Sendable {
    private let alive = Mutex(true)

    func whileAlive<T: Sendable>(_ body: () -> T) -> T? {
        alive.withLock { alive -> T? in alive ? body() : nil }
    }

    private func end() { alive.withLock { $0 = false } }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { raw in
            guard let raw else { return }
            Unmanaged<ThreadLife>.fromOpaque(raw).takeRetainedValue().end()
        }
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
        return key
    }()

    /// The calling thread's life, made on the first call on that thread.
    static func current() -> ThreadLife {
        if let raw = pthread_getspecific(key) { return Unmanaged<ThreadLife>.fromOpaque(raw).takeUnretainedValue() }
        let life = ThreadLife()
        pthread_setspecific(key, Unmanaged.passRetained(life).toOpaque())
        return life
    }
}

extension ThreadCounterPointers {
    /// The owning thread's counters read from any thread: relaxed atomic loads of the two 8-byte aligned words
    /// jemalloc updates on every malloc and free. Only inside the owner's `ThreadLife.whileAlive`.
    func readFromAnyThread() -> (allocated: UInt64, deallocated: UInt64) {
        let a = UnsafePointer<Atomic<UInt64>>(OpaquePointer(allocated)).pointee.load(ordering: .relaxed)
        let d = UnsafePointer<Atomic<UInt64>>(OpaquePointer(deallocated)).pointee.load(ordering: .relaxed)
        return (a, d)
    }
}

/// One loop thread as set up for reading from outside.
struct LiveLoopProbe: Sendable {
    var loop: EventLoop
    var threadID: Int32
    var life: ThreadLife
    var jemalloc: ThreadCounterPointers?
    var arena: ArenaRequestNames?
    var memcpy: MemcpySlot?
}

/// A pool's reactor threads, read from any thread that is not one of them.
public final class LiveMeter: Sendable {
    public let pool: ReactorPool
    public let allocator: AllocatorInfo
    public let memcpyCounter: MemcpyCounter?
    /// Allocation counts are exact only with thread caches off (MALLOC_CONF=tcache:false): then each loop gets an
    /// arena of its own at set-up and its request count is read from outside without flushing anything.
    public let allocationCountsExact: Bool
    let mallctl: Mallctl?
    let probes: [LiveLoopProbe]

    /// Visits every loop once (a task on each, the only work ever put on them) to capture its counters.
    public init(pool: ReactorPool) {
        self.pool = pool
        let instruments = ProcessInstruments.detect()
        (allocator, mallctl, memcpyCounter) = (instruments.allocator, instruments.mallctl, instruments.memcpyCounter)
        let exact = instruments.requestCountsCanBeExact
        var probes: [LiveLoopProbe] = []
        for loop in pool.loops {
            let probe = loop.submitAndWait { () -> LiveLoopProbe in
                LiveLoopProbe(
                    loop: loop, threadID: zcr_thread_id(), life: ThreadLife.current(),
                    jemalloc: instruments.threadCounters(),
                    arena: instruments.dedicatedArena(exact),
                    memcpy: instruments.memcpySlot())
            }
            // A stopped loop: its published counters are final and nothing else can be read.
            probes.append(
                probe
                    ?? LiveLoopProbe(
                        loop: loop, threadID: 0, life: ThreadLife.ended, jemalloc: nil, arena: nil, memcpy: nil))
        }
        self.probes = probes
        allocationCountsExact = exact && probes.allSatisfy { $0.arena != nil }
    }

    /// Every loop now. Takes no lock a loop holds for long, and runs nothing on the loops.
    public func snapshot() -> MeterSnapshot {
        let start = EventLoop.now()
        let m = mallctl
        let refreshed = m?.refreshStatistics() ?? false
        var readings: [LoopReading] = []
        readings.reserveCapacity(probes.count)
        for p in probes {
            let bytes = p.jemalloc.flatMap { j in p.life.whileAlive { j.readFromAnyThread() } }
            let requests = refreshed ? p.arena.flatMap { m?.arenaRequests($0) } : nil
            var r = LoopReading(
                loop: p.loop.index, threadID: p.threadID, arena: p.arena?.arena, allocatedBytes: bytes?.allocated,
                deallocatedBytes: bytes?.deallocated, requests: requests, counters: p.loop.publishedCounters())
            r.memcpy = p.memcpy?.read()
            readings.append(r)
        }
        var snapshot = MeterSnapshot(nanos: start, loops: readings)
        if let m, refreshed { snapshot.heap = m.heapStats(refresh: false) }
        snapshot.memory = ProcessMemory.read()
        return snapshot
    }
}

extension ThreadLife {
    /// A life that has already ended (a loop that stopped before it could be visited).
    static let ended: ThreadLife = {
        let life = ThreadLife()
        life.end()
        return life
    }()
}
