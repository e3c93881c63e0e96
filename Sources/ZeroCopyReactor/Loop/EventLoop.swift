// One reactor thread: its epoll instance, an eventfd to wake it, its timers, its task queue, the connections that
// need a flush, its read buffers and its iovec scratch space. Everything marked "loop only" is touched by the
// loop's thread alone; the rest is the small cross-thread surface: `execute`, `scheduleFlush`, counters snapshots.
import CZeroCopyShims
import Dispatch
import Glibc
import Synchronization

/// Something registered with a loop's epoll instance.
protocol Selectable: AnyObject {
    func ready(events: UInt32)
}

/// A registration: the slot in the loop's table and its generation, packed into epoll's 64-bit data, so an event
/// for a slot that was freed (and maybe reused) since `epoll_wait` returned is recognised and dropped.
struct Registration: Equatable {
    var slot: UInt32
    var generation: UInt32
    var data: UInt64 { UInt64(generation) << 32 | UInt64(slot) }
}

/// Counters of one loop. Loop only; read them through `ReactorPool.counters()` (from any thread, loop threads
/// included, without blocking) or `EventLoop.currentCounters()` on the loop.
public struct LoopCounters: Sendable, Equatable {
    public var loop = 0
    public var connectionsAccepted = 0
    public var connectionsConnected = 0
    public var connectionsOpen = 0
    public var connectionsClosed = 0
    /// Connections that ended with a reset because their output was cut: `abort()`, a write stall, a close or
    /// shutdown deadline, a handler that failed with data owed.
    public var connectionsAborted = 0
    /// Accepted connections closed at once because the pool was at `maxConnections`.
    public var connectionsRefused = 0
    public var acceptErrors = 0
    /// Connections ended by each time bound.
    public var idleTimeouts = 0
    public var writeStallTimeouts = 0
    public var closeTimeouts = 0
    /// Read memory: retired buffers still held by slices, their bytes, free buffers kept for reuse, and buffers
    /// given back to the allocator.
    public var readBuffersHeld = 0
    public var readBytesHeld = 0
    public var readBuffersFree = 0
    public var readBuffersFreed = 0
    /// Connections whose reading is paused now because the loop's read memory is over its budget, and how many
    /// times a connection was paused for it.
    public var connectionsPausedForReadMemory = 0
    public var readPausesForMemory = 0
    /// Slices taken from this loop thread's node pool and not yet released (a connection's own writes from its
    /// handler; writes from other threads count in their pools). `ReactorPool.slicesOutstandingInProcess` has all.
    public var slicesOutstanding = 0
    /// Handlers run by `ReactorPool.serve` that threw (their connections were aborted; logged with the connection's
    /// id when the pool has a logger).
    public var handlerFailures = 0
    /// Connections that ended while MSG_ZEROCOPY completions were pending, still waiting for them now.
    public var zeroCopyLingering = 0
    /// Slices released at the completion deadline (`ReactorConfiguration.zeroCopyCompletionDeadlineNanos`) without
    /// their completion.
    public var zeroCopyDeadlineReleases = 0
    /// Connections where SO_ZEROCOPY could not be set (they send as usual).
    public var zeroCopyRefused = 0
    public var reads = 0
    public var bytesRead = 0
    public var write = FlushStats()
    /// Times the loop was woken by another thread through its eventfd.
    public var wakeups = 0
    public var iterations = 0
    /// Bytes the library copied (only `writeCopying` and the copy-control path do): 0 on the zero-copy path.
    public var bytesCopied = 0
    public var readBuffersAllocated = 0
    public var chainNodesAllocated = 0
    public init() {}

    /// Average slices per send/sendmsg call.
    public var slicesPerCall: Double { write.syscalls == 0 ? 0 : Double(write.slicesWritten) / Double(write.syscalls) }
}

public final class EventLoop: @unchecked Sendable {
    public let index: Int
    let configuration: ReactorConfiguration
    /// The pool-wide connection limit this loop's listeners admit against (nil: none).
    let admission: ConnectionAdmission?
    private let epoll: FileDescriptor
    private let wakeFD: FileDescriptor

    // Cross-thread state.
    /// Tasks from any thread. The loop swaps the array out, so steady state allocates nothing.
    /// A queued task. Wrapping the closure in a struct stores it as it was passed: an array of bare function values
    /// would re-wrap each one in a reabstraction thunk, an allocation per `execute`.
    struct Task { let run: @Sendable () -> Void }
    /// What other threads hand the loop: closures (`execute`) and the jobs of tasks that prefer this loop as their
    /// executor (see EventLoop+TaskExecutor.swift), in one lock so one wake-up covers both.
    struct Inbox {
        var tasks: [Task] = []
        var jobs: [UnownedJob] = []
        var isEmpty: Bool { tasks.isEmpty && jobs.isEmpty }
    }
    let inbox = Locked(Inbox())
    /// Connections whose chain went from idle to non-empty: an intrusive stack (Connection.readyNext) of retained
    /// references, pushed by any thread and taken whole by the loop. Push: releasing compare-exchange (the
    /// connection's `readyNext` is published with it); take: acquiring exchange. Take-all means no ABA.
    private let readyHead = Atomic<UInt>(0)
    /// True while an eventfd write is outstanding, so a burst of cross-thread work costs one wake-up.
    /// Sequentially consistent on both sides: the loop clears it before it drains, a producer sets it after it
    /// pushed, so every push is either seen by a drain or followed by a wake.
    private let wakePending = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    /// The counters as they were at the end of the loop's last iteration (and, once stopped, when it stopped):
    /// what other loops' threads read, so that no loop ever waits for another.
    let published = Locked(LoopCounters())
    private let hasStopped = Atomic<Bool>(false)
    /// Bytes copied on this loop's connections (by any thread; relaxed: a statistic).
    let bytesCopied = Atomic<Int>(0)
    /// Async handlers of this loop's connections that threw (counted by `serve`, on any thread; relaxed).
    let handlerFailures = Atomic<Int>(0)
    /// The loop thread's pthread id, stored by the thread itself as its first action.
    private let loopThread = Atomic<UInt>(0)
    /// The id to join, stored by `start` (0 once joined).
    private let joinable = Atomic<UInt>(0)

    // Loop only.
    //
    // `@exclusivity(unchecked)` on the loop-only state that every request modifies: only the loop thread touches
    // it, and no access to it is held across a call out of the loop's own code (each is a plain read or a `+=`),
    // so the runtime check Swift makes on each modify of a class's stored property can never fire. It cost a
    // thread-local lookup and an access-set insert, about 80 instructions each, five times a request: 16% of
    // the server's user-space instructions in 1,000-connection ping-pong (callgrind, BENCHMARKS.md).
    /// The registered items, by slot. `connection` repeats `item` unretained when it is a Connection, so the
    /// dispatch of its events takes no reference (a retain and a release, two locked instructions and a write to
    /// the connection's first cache line, every request). Invariant: while the loop dispatches a batch of events
    /// (`dispatchingEvents`), a slot's released item is kept in `retiring` until the batch ends, so an item whose
    /// event handling tore it down stays alive until its `ready` has returned.
    /// `chain` and `handler` are the connection's write chain and handler object, unretained too, for `prefetch`.
    private var slots: [(
        item: (any Selectable)?, generation: UInt32, connection: Unmanaged<Connection>?, chain: Unmanaged<WriteChain>?,
        handler: UnsafeRawPointer?
    )] = []
    @exclusivity(unchecked) private var dispatchingEvents = false
    @exclusivity(unchecked) private var retiring: [any Selectable] = []
    private var freeSlots: [UInt32] = []
    private var timers = TimerHeap()
    @exclusivity(unchecked) var readBuffers: ReadBufferPool
    /// Connections paused because the read memory is over budget (loop only).
    private var pausedForMemory: [Connection] = []
    private var memoryCheckTimer: TimerID?
    /// The sweep that enforces idle, write-stall and close deadlines, and how often it runs (loop only).
    private var sweepTimer: TimerID?
    private var sweepInterval: UInt64 = 0
    /// The monotonic time at the start of this iteration (loop only): activity stamps use it, not a clock call.
    private(set) var iterationStart: UInt64 = 0
    let iov: IOVecArray
    @exclusivity(unchecked) var counters = LoopCounters()
    private var events: UnsafeMutableBufferPointer<zcr_epoll_event>
    private var shutdownDeadline: UInt64?
    var listeners: [Listener] = []
    private var onStop: [() -> Void] = []
    /// Set under the inbox's lock once the loop ends: from then on tasks are refused and jobs go to the global
    /// executor.
    var finished = false
    /// Jobs enqueued on the loop's own thread (loop only; see EventLoop+TaskExecutor.swift), and the array they are
    /// swapped into to run, so that steady state allocates nothing.
    var localJobs: [UnownedJob] = []
    private var jobScratch: [UnownedJob] = []

    init(index: Int, configuration: ReactorConfiguration, admission: ConnectionAdmission? = nil) throws(ReactorError) {
        self.index = index
        self.configuration = configuration
        self.admission = admission
        do {
            epoll = try Sys.epollCreate()
            wakeFD = try Sys.eventfd()
            try Sys.epollControl(epoll.raw, Epoll.add, wakeFD.raw, events: Epoll.input, data: UInt64.max)
        } catch {
            throw .system(error)
        }
        let memory = ReadMemory(
            bufferSize: configuration.readBufferSize, budget: configuration.readMemoryBudget,
            freeLimit: configuration.readBuffersKeptFree)
        readBuffers = ReadBufferPool(memory: memory)
        iov = IOVecArray()
        events = .allocate(capacity: 256)
        counters.loop = index
        memory.loop = self
    }

    deinit {
        events.deallocate()
    }

    // MARK: thread

    func start() {
        let tid = PosixThread.spawn(name: "zcr-loop-\(index)", joinable: true) { [self] in
            loopThread.store(UInt(pthread_self()), ordering: .relaxed)
            PosixThread.setCurrentLoop(self)
            run()
        }
        joinable.store(UInt(tid), ordering: .releasing)
    }

    /// Waits for the loop's thread to end (after `beginShutdown`). Called once, by the pool's shutdown.
    func join() {
        let tid = joinable.exchange(0, ordering: .acquiring)
        if tid != 0 && !inLoop { PosixThread.join(tid) }
    }

    /// True on this loop's own thread.
    public var inLoop: Bool {
        // Relaxed: the loop thread stored its own id before running anything, so on that thread the load sees it
        // (program order); any other thread sees either 0 or an id that is not its own. Both answer "not here".
        loopThread.load(ordering: .relaxed) == UInt(pthread_self())
    }

    func preconditionInLoop(_ what: StaticString = #function) {
        precondition(inLoop, "\(what) must run on loop \(index)'s thread")
    }

    // MARK: cross-thread work

    /// Runs `task` on the loop thread, soon. Returns false (and drops the task) once the loop has stopped.
    @discardableResult
    public func execute(_ task: @escaping @Sendable () -> Void) -> Bool {
        let accepted = inbox.withLock { queue -> Bool in
            if finished { return false }
            queue.tasks.append(Task(run: task))
            return true
        }
        if accepted && !inLoop { wake() }
        return accepted
    }

    /// Runs `body` on the loop and waits for its result (runs it directly when called on the loop).
    /// Returns nil when the loop has stopped, and refuses (nil, with a warning in the pool's log) when called on
    /// another loop's thread: a loop that waits for another can deadlock with it. Use `execute` there.
    public func submitAndWait<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T? {
        if inLoop { return body() }
        if let other = PosixThread.currentLoop {
            configuration.logger.warning("submitAndWait refused: loop \(other.index) would wait for loop \(index)")
            return nil
        }
        let result = Locked<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        let ok = execute {
            let value = body()
            result.withLock { $0 = value }
            done.signal()
        }
        guard ok else { return nil }
        done.wait()
        return result.withLock { $0 }
    }

    /// Marks `connection` as needing a flush: pushes it on the ready stack unless it is there already.
    /// Called by the producer whose append took the chain from idle to non-empty, and by the loop to continue a flush.
    /// The connection's `flushQueued` flag keeps it on the stack at most once: a flush that did not come from the
    /// stack (after connect, on EPOLLOUT) can drain the chain while the connection is still queued, and the next
    /// append would otherwise push it a second time and cut the stack.
    func scheduleFlush(_ connection: Connection) {
        // Acquiring-and-releasing: pairs with the loop's exchange in `flushReady`, so an append made before a
        // producer found the flag set is visible to the flush that follows the loop's clearing of it.
        if connection.flushQueued.exchange(true, ordering: .acquiringAndReleasing) { return }
        let raw = UInt(bitPattern: Unmanaged.passRetained(connection).toOpaque())
        var old = readyHead.load(ordering: .relaxed)
        while true {
            connection.readyNext = old
            let (done, seen) = readyHead.compareExchange(
                expected: old, desired: raw, successOrdering: .releasing, failureOrdering: .relaxed)
            if done { break }
            old = seen
        }
        if old == 0 && !inLoop { wake() }
    }

    func wake() {
        if !wakePending.exchange(true, ordering: .sequentiallyConsistent) {
            Sys.eventfdWrite(wakeFD.raw)
        }
    }

    // MARK: registrations (loop only)

    func register(fd: Int32, events: UInt32, _ item: any Selectable) throws(SystemError) -> Registration {
        let slot: UInt32
        if let free = freeSlots.popLast() {
            slot = free
            let connection = Self.unretainedConnection(item)
            slots[Int(slot)].item = item
            slots[Int(slot)].connection = connection
            slots[Int(slot)].chain = connection.map { Unmanaged.passUnretained($0.takeUnretainedValue().chain) }
            slots[Int(slot)].handler = connection?.takeUnretainedValue().handlerAddress
        } else {
            slot = UInt32(slots.count)
            let connection = Self.unretainedConnection(item)
            slots.append((item, 0, connection, connection.map { Unmanaged.passUnretained($0.takeUnretainedValue().chain) },
                          connection?.takeUnretainedValue().handlerAddress))
        }
        let registration = Registration(slot: slot, generation: slots[Int(slot)].generation)
        do {
            try Sys.epollControl(epoll.raw, Epoll.add, fd, events: events, data: registration.data)
        } catch {
            release(registration)
            throw error
        }
        return registration
    }

    func modify(fd: Int32, _ registration: Registration, events: UInt32) throws(SystemError) {
        try Sys.epollControl(epoll.raw, Epoll.modify, fd, events: events, data: registration.data)
    }

    func deregister(fd: Int32, _ registration: Registration) {
        _ = try? Sys.epollControl(epoll.raw, Epoll.delete, fd, events: 0, data: 0)
        release(registration)
    }

    /// Items released during the batch of events being dispatched, kept until it ends (loop only; for tests).
    var retiringCount: Int { retiring.count }

    // Prefetching. The connection an event names is rarely in cache: between two of its requests the kernel's work for
    // the other connections evicts it, and the first load from it waited for memory every request (perf: a third of
    // the user-space samples of the loop cut down to a read and a send, `Benchmarks/adhoc/floor.patch`, fell on that
    // one load). So while event i is handled, the slot of event i + 2 is brought in, and the connection, write chain
    // and handler of event i + 1: a slot's line first, since those addresses are read from it, then the first three
    // lines of the connection and of the chain (which hold what a request touches; see their declarations) and the
    // handler's first (its reference count). Hints only: nothing is read but `events` and the slot, whose entry is
    // checked as the dispatch checks it, and a stale or freed address costs a wasted prefetch, never a fault. In
    // 1,000-connection ping-pong it took 3% off the server's CPU per request (BENCHMARKS.md, session 8).

    @inline(__always)
    private func slotIndex(_ i: Int, _ n: Int) -> Int? {
        guard i < n else { return nil }
        let slot = Int(UInt32(truncatingIfNeeded: events[i].data))
        return slot < slots.count ? slot : nil
    }

    @inline(__always)
    private func prefetch(slotOf i: Int, _ n: Int) {
        guard let slot = slotIndex(i, n) else { return }
        slots.withUnsafeBufferPointer { zcr_prefetch_read($0.baseAddress! + slot) }
    }

    @inline(__always)
    private func prefetch(connectionOf i: Int, _ n: Int) {
        guard let slot = slotIndex(i, n), let connection = slots[slot].connection,
              let chain = slots[slot].chain else { return }
        let c = UnsafeRawPointer(connection.toOpaque())
        zcr_prefetch_write(c)
        zcr_prefetch_write(c + 64)
        zcr_prefetch_write(c + 128)
        let w = UnsafeRawPointer(chain.toOpaque())
        zcr_prefetch_write(w)
        zcr_prefetch_write(w + 64)
        zcr_prefetch_write(w + 128)
        // The handler's first line holds its reference count, which the read callback's call retains and releases.
        if let h = slots[slot].handler { zcr_prefetch_write(h) }
    }

    private static func unretainedConnection(_ item: any Selectable) -> Unmanaged<Connection>? {
        (item as? Connection).map { Unmanaged.passUnretained($0) }
    }

    private func release(_ registration: Registration) {
        let i = Int(registration.slot)
        guard slots[i].generation == registration.generation else { return }
        if dispatchingEvents, let item = slots[i].item { retiring.append(item) }
        slots[i].connection = nil
        slots[i].chain = nil
        slots[i].handler = nil
        slots[i].item = nil
        slots[i].generation &+= 1
        freeSlots.append(registration.slot)
    }

    // MARK: timers (loop only)

    /// Runs `action` on the loop at `deadline` (monotonic nanoseconds, see `now`).
    @discardableResult
    public func scheduleTimer(at deadline: UInt64, _ action: @escaping () -> Void) -> TimerID {
        preconditionInLoop()
        return timers.schedule(at: deadline, action)
    }

    @discardableResult
    public func scheduleTimer(after nanoseconds: UInt64, _ action: @escaping () -> Void) -> TimerID {
        scheduleTimer(at: Self.now() &+ nanoseconds, action)
    }

    /// Runs `action` on the loop every `interval` nanoseconds until cancelled. The timer is one heap entry reused
    /// for every run, so a repeating timer allocates nothing after it is scheduled.
    @discardableResult
    public func scheduleRepeatingTimer(every interval: UInt64, _ action: @escaping () -> Void) -> TimerID {
        preconditionInLoop()
        return timers.schedule(at: Self.now() &+ interval, repeating: interval, action)
    }

    /// Cancels a timer: it will not run, even if it is due in the round being run, and its closure is dropped now.
    public func cancelTimer(_ timer: TimerID) {
        preconditionInLoop()
        timers.cancel(timer)
    }

    /// Live timers (loop only; for tests).
    var timerCount: Int { timers.count }

    /// Monotonic clock in nanoseconds.
    public static func now() -> UInt64 { Sys.monotonicNanos() }

    // MARK: the loop

    private func run() {
        if let interval = configuration.metricsIntervalNanos {
            let metrics = LoopMetrics(loop: index)
            scheduleRepeatingTimer(every: interval) { [unowned self] in metrics.report(currentCounters()) }
        }
        while true {
            let timeout = nextTimeout()
            let n: Int
            do {
                n = try Sys.epollWait(epoll.raw, events, timeoutNanos: timeout)
            } catch {
                fatalError("epoll_wait failed on loop \(index): \(error)")
            }
            counters.iterations += 1
            iterationStart = Self.now()
            dispatchingEvents = true
            if n > 0 { prefetch(slotOf: 0, n) }
            if n > 1 { prefetch(slotOf: 1, n) }
            if n > 0 { prefetch(connectionOf: 0, n) }
            for i in 0..<n {
                prefetch(slotOf: i + 2, n)
                prefetch(connectionOf: i + 1, n)
                let event = events[i]
                if event.data == UInt64.max {
                    counters.wakeups += 1
                    Sys.eventfdDrain(wakeFD.raw)
                    wakePending.store(false, ordering: .sequentiallyConsistent)
                    continue
                }
                let slot = Int(UInt32(truncatingIfNeeded: event.data))
                let generation = UInt32(truncatingIfNeeded: event.data >> 32)
                guard slot < slots.count, slots[slot].generation == generation else { continue }
                if let connection = slots[slot].connection {
                    // Unretained: the slot holds it, and if its events tear it down, `retiring` does until the batch
                    // ends (see `slots`).
                    connection._withUnsafeGuaranteedRef { $0.ready(events: event.events) }
                } else if let item = slots[slot].item {
                    item.ready(events: event.events)
                }
            }
            dispatchingEvents = false
            if !retiring.isEmpty { retiring.removeAll(keepingCapacity: true) }
            runTasks()
            runJobs()
            flushReady()
            runTimers()
            if readBuffers.overBudget { enforceReadBudget() }
            if stopping.load(ordering: .acquiring) && shutdownStep() { break }
            publish()
        }
        finish()
    }

    private func nextTimeout() -> Int64 {
        if readBuffers.overBudget { return 0 }
        if readyHead.load(ordering: .relaxed) != 0 || !localJobs.isEmpty || !inbox.withLock({ $0.isEmpty }) {
            return 0
        }
        var deadline = timers.nextDeadline()
        if let d = shutdownDeadline { deadline = min(deadline ?? d, d) }
        guard let deadline else { return -1 }
        let now = Self.now()
        return deadline <= now ? 0 : Int64(deadline - now)
    }

    private var taskScratch: [Task] = []

    private func runTasks() {
        inbox.withLock { swap(&$0.tasks, &taskScratch) }
        for task in taskScratch { task.run() }
        taskScratch.removeAll(keepingCapacity: true)
    }

    /// Runs the jobs queued by other threads, then those queued on this thread, a few rounds (a job resumed by
    /// another job in the same iteration runs at once), and leaves the rest for the next iteration (whose wait then
    /// does not block) so that tasks that keep yielding cannot hold the loop.
    private func runJobs() {
        let executor = asUnownedTaskExecutor()
        for round in 0..<4 {
            if round == 0 {
                inbox.withLock { swap(&$0.jobs, &jobScratch) }
                jobScratch.append(contentsOf: localJobs)
                localJobs.removeAll(keepingCapacity: true)
            } else {
                if localJobs.isEmpty { return }
                swap(&localJobs, &jobScratch)
            }
            for job in jobScratch { job.runSynchronously(on: executor) }
            jobScratch.removeAll(keepingCapacity: true)
        }
    }

    private func flushReady() {
        // Acquire pairs with the producers' releasing push: each connection's readyNext is visible.
        let raw = readyHead.exchange(0, ordering: .acquiring)
        // The stack is newest first; reverse it so connections are served in the order they asked.
        func connection(_ raw: UInt) -> Connection {
            Unmanaged<Connection>.fromOpaque(UnsafeRawPointer(bitPattern: raw)!).takeUnretainedValue()
        }
        var reversed = reverseIntrusiveList(
            raw == 0 ? nil : raw, next: { let n = connection($0).readyNext; return n == 0 ? nil : n },
            setNext: { connection($0).readyNext = $1 ?? 0 }) ?? 0
        while reversed != 0 {
            let c = Unmanaged<Connection>.fromOpaque(UnsafeRawPointer(bitPattern: reversed)!).takeRetainedValue()
            reversed = c.readyNext
            c.readyNext = 0
            // Off the stack before the flush: an append from now on may queue the connection again.
            _ = c.flushQueued.exchange(false, ordering: .acquiringAndReleasing)
            c.flushNow()
        }
    }

    /// Runs the timers due now, one at a time (a timer cancelled by an earlier one never runs), at most 4096 a round
    /// so that a timer that reschedules itself at once cannot hold the loop.
    private func runTimers() {
        guard let first = timers.nextDeadline(), first <= Self.now() else { return }
        let now = Self.now()
        for _ in 0..<4096 {
            guard let action = timers.popDue(now: now) else { return }
            action()
        }
    }

    // MARK: read memory (loop only)

    /// A rotation took the held read memory over the budget. Each connection holding retained bytes is entitled
    /// to an equal share of the budget; every one holding more than its share has its reading paused. If nobody
    /// does (many small holders pinning whole buffers), the largest holders are paused until what they hold covers
    /// the excess over the resume mark. A connection holding nothing is never paused, so new and well-behaved
    /// connections keep being served.
    private func enforceReadBudget() {
        readBuffers.overBudget = false
        let memory = readBuffers.memory
        guard memory.heldBytes > memory.budget else { return }
        var holders: [(held: Int, connection: Connection)] = []
        var holding = 0
        forEachConnection { c in
            let held = c.readBytesHeld.load(ordering: .relaxed)
            guard held > 0 else { return }
            holding += 1
            if c.canPauseForMemory { holders.append((held, c)) }
        }
        memoryShare = memory.budget / max(1, holding)
        let before = pausedForMemory.count
        for (held, c) in holders where held > memoryShare { pause(c) }
        if pausedForMemory.count == before {
            holders.sort { $0.held > $1.held }
            var excess = memory.heldBytes - memory.resumeMark
            for (held, c) in holders where excess > 0 {
                pause(c)
                excess -= max(held, readBuffers.bufferSize)
            }
        }
        if !pausedForMemory.isEmpty { armMemoryCheck() }
    }

    /// Each holder's share of the read budget at the last enforcement (loop only).
    private var memoryShare = 0

    private func pause(_ c: Connection) {
        c.setPausedForMemory(true)
        pausedForMemory.append(c)
        counters.readPausesForMemory += 1
    }

    /// While connections are paused for memory: a release on another thread wakes the loop at the resume mark
    /// (`ReadMemory.wakeWanted`), and a 10 ms check covers releases on this loop and connections whose own share
    /// fell to nothing.
    private func armMemoryCheck() {
        readBuffers.memory.wakeWanted.store(true, ordering: .relaxed)
        guard memoryCheckTimer == nil else { return }
        memoryCheckTimer = scheduleTimer(after: 10_000_000) { [unowned self] in
            memoryCheckTimer = nil
            checkPausedForMemory()
        }
    }

    /// Called by `ReadMemory` on whatever thread released enough read memory.
    func readMemoryReleased() {
        execute { [unowned self] in checkPausedForMemory() }
    }

    /// Resumes every connection paused for memory once the held memory is at the resume mark, and before that each
    /// one that now holds at most half its share (or a minimum read).
    private func checkPausedForMemory() {
        let memory = readBuffers.memory
        let under = memory.heldBytes <= memory.resumeMark
        let enough = max(memoryShare / 2, readBuffers.minimumRead)
        pausedForMemory.removeAll { c in
            if c.isClosed { return true }
            guard under || c.readBytesHeld.load(ordering: .relaxed) <= enough else { return false }
            c.setPausedForMemory(false)
            return true
        }
        if !pausedForMemory.isEmpty { armMemoryCheck() }
    }

    // MARK: time bounds (loop only)

    /// Makes sure the sweep runs at least every `interval` nanoseconds (a connection's bounds are checked to within
    /// an eighth of the smallest one, at most every second, at least every 10 ms).
    func ensureSweep(for bound: UInt64) {
        let interval = min(max(bound / 8, 10_000_000), 1_000_000_000)
        if sweepTimer != nil && sweepInterval <= interval { return }
        if let t = sweepTimer { cancelTimer(t) }
        sweepInterval = interval
        sweepTimer = scheduleRepeatingTimer(every: interval) { [unowned self] in
            let now = Self.now()
            forEachConnection { $0.checkTimeBounds(now: now) }
        }
    }

    /// Calls `body` for every registered connection, by index: no array is made (the sweep runs every second or
    /// more often) and a connection that closes meanwhile is simply skipped next time.
    private func forEachConnection(_ body: (Connection) -> Void) {
        var i = 0
        while i < slots.count {
            if let c = slots[i].item as? Connection { body(c) }
            i += 1
        }
    }

    // MARK: shutdown

    /// Starts a graceful stop: no more accepts, and every connection is asked to drain (its handler's
    /// `connectionWillDrain`, by default a close once its output is sent); whatever is still open at `deadline` is
    /// aborted, so its peer sees a reset, never a clean end after partial output. Called again, the earliest
    /// deadline wins (a second signal cuts the drain short, whatever order the calls reach the loop in).
    func beginShutdown(deadline: UInt64) {
        execute { [self] in
            let first = !stopping.load(ordering: .relaxed)
            shutdownDeadline = min(shutdownDeadline ?? deadline, deadline)
            stopping.store(true, ordering: .releasing)
            guard first else { return }
            for l in listeners { l.close() }
            listeners.removeAll()
            for case let c as Connection in slots.compactMap(\.item) { c.beginDrain() }
        }
    }

    /// True once the loop is shutting down: new connections and listeners are refused (loop only).
    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// Called every iteration once stopping: true when the loop may exit.
    private func shutdownStep() -> Bool {
        let live = slots.compactMap(\.item).compactMap { $0 as? Connection }
        let lingering = slots.compactMap(\.item).compactMap { $0 as? CompletionLinger }
        if live.isEmpty && lingering.isEmpty { return true }
        if let d = shutdownDeadline, Self.now() >= d {
            for l in lingering { l.finish(expired: true) }
            configuration.logger.warning(
                "shutdown deadline: aborting connections still open", metadata: ["loop": "\(index)", "count": "\(live.count)"])
            for c in live { c.abort() }
            return slots.allSatisfy { $0.item == nil }
        }
        return false
    }

    private func finish() {
        // Refuse new tasks, then run what was queued before (it may hold slices: they are released either way).
        let (remaining, jobs) = inbox.withLock { queue -> ([Task], [UnownedJob]) in
            finished = true
            defer { queue = Inbox() }
            return (queue.tasks, queue.jobs)
        }
        for task in remaining { task.run() }
        // Tasks that prefer this loop go on on the global executor: nothing runs here any more.
        for job in jobs + localJobs { globalConcurrentExecutor.enqueue(ExecutorJob(job)) }
        localJobs.removeAll()
        flushReady()
        // Completions can no longer be waited for: the loop is ending.
        for case let l as CompletionLinger in slots.compactMap(\.item) { l.finish(expired: true) }
        for l in listeners { l.close() }
        listeners.removeAll()
        // Buffers retired while held go on living with their slices; the free ones go back now.
        readBuffers.memory.collectReturned()
        publish()
        hasStopped.store(true, ordering: .releasing)
    }

    /// This loop's counters now. Loop only (from a task or a callback on this loop); other threads use
    /// `ReactorPool.counters()`.
    public func currentCounters() -> LoopCounters {
        preconditionInLoop()
        return snapshot()
    }

    /// The counters as of the end of the loop's last iteration, from any thread, without waiting.
    public func publishedCounters() -> LoopCounters { published.withLock { $0 } }

    /// True once the loop's thread has finished (its published counters are final).
    var stopped: Bool { hasStopped.load(ordering: .acquiring) }

    private func publish() {
        let c = snapshot()
        published.withLock { $0 = c }
    }

    /// A snapshot of the counters (the loop, or the stopping loop's last act).
    func snapshot() -> LoopCounters {
        var c = counters
        c.bytesCopied = bytesCopied.load(ordering: .relaxed)
        c.handlerFailures = handlerFailures.load(ordering: .relaxed)
        let memory = readBuffers.memory
        memory.trimFree(now: iterationStart)
        let idleRecent = readBuffers.settle()
        c.readBuffersAllocated = memory.blocksAllocated
        c.readBuffersFreed = memory.blocksFreed
        c.readBuffersFree = memory.freeBlocks + idleRecent
        c.slicesOutstanding = NodePool.current.outstanding
        c.readBuffersHeld = memory.heldBuffers.load(ordering: .relaxed)
        c.readBytesHeld = c.readBuffersHeld * memory.bufferSize
        c.connectionsPausedForReadMemory = pausedForMemory.count
        c.chainNodesAllocated = NodePool.current.allocatedNodes
        return c
    }
}

