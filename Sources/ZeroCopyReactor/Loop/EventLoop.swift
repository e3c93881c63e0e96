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

/// Counters of one loop. Loop only; read them through `ReactorPool.counters()`.
public struct LoopCounters: Sendable, Equatable {
    public var loop = 0
    public var connectionsAccepted = 0
    public var connectionsConnected = 0
    public var connectionsOpen = 0
    public var connectionsClosed = 0
    public var acceptErrors = 0
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
    private let epoll: FileDescriptor
    private let wakeFD: FileDescriptor

    // Cross-thread state.
    /// Tasks from any thread. The loop swaps the array out, so steady state allocates nothing.
    /// A queued task. Wrapping the closure in a struct stores it as it was passed: an array of bare function values
    /// would re-wrap each one in a reabstraction thunk, an allocation per `execute`.
    struct Task { let run: @Sendable () -> Void }
    private let tasks = Locked<[Task]>([])
    /// Connections whose chain went from idle to non-empty: an intrusive stack (Connection.readyNext) of retained
    /// references, pushed by any thread and taken whole by the loop. Push: releasing compare-exchange (the
    /// connection's `readyNext` is published with it); take: acquiring exchange. Take-all means no ABA.
    private let readyHead = Atomic<UInt>(0)
    /// True while an eventfd write is outstanding, so a burst of cross-thread work costs one wake-up.
    /// Sequentially consistent on both sides: the loop clears it before it drains, a producer sets it after it
    /// pushed, so every push is either seen by a drain or followed by a wake.
    private let wakePending = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    /// The counters as they were when the loop stopped.
    let finalCounters = Locked<LoopCounters?>(nil)
    /// Bytes copied on this loop's connections (by any thread; relaxed: a statistic).
    let bytesCopied = Atomic<Int>(0)
    /// The loop thread's pthread id, stored by the thread itself as its first action.
    private let loopThread = Atomic<UInt>(0)
    /// The id to join, stored by `start` (0 once joined).
    private let joinable = Atomic<UInt>(0)

    // Loop only.
    private var slots: [(item: (any Selectable)?, generation: UInt32)] = []
    private var freeSlots: [UInt32] = []
    private var timers = TimerHeap()
    var readBuffers: ReadBufferPool
    let iov: IOVecArray
    var counters = LoopCounters()
    private var events: UnsafeMutableBufferPointer<zcr_epoll_event>
    private var shutdownDeadline: UInt64?
    var listeners: [Listener] = []
    private var onStop: [() -> Void] = []
    private var finished = false

    init(index: Int, configuration: ReactorConfiguration) throws(ReactorError) {
        self.index = index
        self.configuration = configuration
        do {
            epoll = try Sys.epollCreate()
            wakeFD = try Sys.eventfd()
            try Sys.epollControl(epoll.raw, Epoll.add, wakeFD.raw, events: Epoll.input, data: UInt64.max)
        } catch {
            throw .system(error)
        }
        readBuffers = ReadBufferPool(bufferSize: configuration.readBufferSize)
        iov = IOVecArray()
        events = .allocate(capacity: 256)
        counters.loop = index
    }

    deinit {
        events.deallocate()
    }

    // MARK: thread

    func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let loop = Unmanaged<EventLoop>.fromOpaque(arg!).takeRetainedValue()
            loop.loopThread.store(UInt(pthread_self()), ordering: .relaxed)
            zcr_set_thread_name("zcr-loop-\(loop.index)")
            loop.run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        joinable.store(UInt(tid), ordering: .releasing)
    }

    /// Waits for the loop's thread to end (after `beginShutdown`). Called once, by the pool's shutdown.
    func join() {
        let tid = joinable.exchange(0, ordering: .acquiring)
        if tid != 0 && !inLoop { pthread_join(pthread_t(tid), nil) }
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
        let accepted = tasks.withLock { queue -> Bool in
            if finished { return false }
            queue.append(Task(run: task))
            return true
        }
        if accepted && !inLoop { wake() }
        return accepted
    }

    /// Runs `body` on the loop and waits for its result (runs it directly when called on the loop).
    public func submitAndWait<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T? {
        if inLoop { return body() }
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

    private func wake() {
        if !wakePending.exchange(true, ordering: .sequentiallyConsistent) {
            Sys.eventfdWrite(wakeFD.raw)
        }
    }

    // MARK: registrations (loop only)

    func register(fd: Int32, events: UInt32, _ item: any Selectable) throws(SystemError) -> Registration {
        let slot: UInt32
        if let free = freeSlots.popLast() {
            slot = free
            slots[Int(slot)].item = item
        } else {
            slot = UInt32(slots.count)
            slots.append((item, 0))
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

    private func release(_ registration: Registration) {
        let i = Int(registration.slot)
        guard slots[i].generation == registration.generation else { return }
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

    public func cancelTimer(_ timer: TimerID) {
        preconditionInLoop()
        timers.cancel(timer)
    }

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
            for i in 0..<n {
                let event = events[i]
                if event.data == UInt64.max {
                    counters.wakeups += 1
                    Sys.eventfdDrain(wakeFD.raw)
                    wakePending.store(false, ordering: .sequentiallyConsistent)
                    continue
                }
                let slot = Int(UInt32(truncatingIfNeeded: event.data))
                let generation = UInt32(truncatingIfNeeded: event.data >> 32)
                guard slot < slots.count, slots[slot].generation == generation, let item = slots[slot].item else {
                    continue
                }
                item.ready(events: event.events)
            }
            runTasks()
            flushReady()
            runTimers()
            if stopping.load(ordering: .acquiring) && shutdownStep() { break }
        }
        finish()
    }

    private func nextTimeout() -> Int64 {
        if readyHead.load(ordering: .relaxed) != 0 || !tasks.withLock({ $0.isEmpty }) { return 0 }
        var deadline = timers.nextDeadline()
        if let d = shutdownDeadline { deadline = min(deadline ?? d, d) }
        guard let deadline else { return -1 }
        let now = Self.now()
        return deadline <= now ? 0 : Int64(deadline - now)
    }

    private var taskScratch: [Task] = []

    private func runTasks() {
        tasks.withLock { swap(&$0, &taskScratch) }
        for task in taskScratch { task.run() }
        taskScratch.removeAll(keepingCapacity: true)
    }

    private func flushReady() {
        // Acquire pairs with the producers' releasing push: each connection's readyNext is visible.
        var raw = readyHead.exchange(0, ordering: .acquiring)
        // The stack is newest first; reverse it so connections are served in the order they asked.
        var reversed: UInt = 0
        while raw != 0 {
            let c = Unmanaged<Connection>.fromOpaque(UnsafeRawPointer(bitPattern: raw)!).takeUnretainedValue()
            let next = c.readyNext
            c.readyNext = reversed
            reversed = raw
            raw = next
        }
        while reversed != 0 {
            let c = Unmanaged<Connection>.fromOpaque(UnsafeRawPointer(bitPattern: reversed)!).takeRetainedValue()
            reversed = c.readyNext
            c.readyNext = 0
            // Off the stack before the flush: an append from now on may queue the connection again.
            _ = c.flushQueued.exchange(false, ordering: .acquiringAndReleasing)
            c.flushNow()
        }
    }

    private var dueTimers: [() -> Void] = []

    private func runTimers() {
        guard let first = timers.nextDeadline(), first <= Self.now() else { return }
        timers.popDue(now: Self.now(), into: &dueTimers)
        for action in dueTimers { action() }
        dueTimers.removeAll(keepingCapacity: true)
    }

    // MARK: shutdown

    /// Starts a graceful stop: no more accepts, every connection closes after flushing what it has queued;
    /// whatever is still open at `deadline` is aborted. Called again, the earliest deadline wins (so a cut-short
    /// drain stays short whatever order the calls reach the loop in).
    func beginShutdown(deadline: UInt64) {
        execute { [self] in
            shutdownDeadline = min(shutdownDeadline ?? deadline, deadline)
            stopping.store(true, ordering: .releasing)
            for l in listeners { l.close() }
            listeners.removeAll()
            for case let c as Connection in slots.compactMap(\.item) { c.close() }
        }
    }

    /// Called every iteration once stopping: true when the loop may exit.
    private func shutdownStep() -> Bool {
        let live = slots.compactMap(\.item).compactMap { $0 as? Connection }
        if live.isEmpty { return true }
        if let d = shutdownDeadline, Self.now() >= d {
            for c in live { c.abort() }
            return slots.allSatisfy { $0.item == nil }
        }
        return false
    }

    private func finish() {
        // Refuse new tasks, then run what was queued before (it may hold slices: they are released either way).
        let remaining = tasks.withLock { queue -> [Task] in
            finished = true
            defer { queue.removeAll() }
            return queue
        }
        for task in remaining { task.run() }
        flushReady()
        let last = snapshot()
        finalCounters.withLock { $0 = last }
    }

    /// This loop's counters now. Loop only (from a task or a callback on this loop); other threads use
    /// `ReactorPool.counters()`.
    public func currentCounters() -> LoopCounters {
        preconditionInLoop()
        return snapshot()
    }

    /// A snapshot of the counters (the loop, or the stopping loop's last act).
    func snapshot() -> LoopCounters {
        var c = counters
        c.bytesCopied = bytesCopied.load(ordering: .relaxed)
        c.readBuffersAllocated = readBuffers.buffersAllocated
        c.chainNodesAllocated = NodePool.current.allocatedNodes
        return c
    }
}

