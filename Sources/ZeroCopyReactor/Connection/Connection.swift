// One TCP connection, on one loop for its whole life. The cross-thread surface is `write` (lock-free append to
// the write chain), `isWritable`, `waitUntilWritable`, and `close`/`shutdownOutput`/`abort`/`pauseReading`
// (which hop to the loop). Everything else is loop only: the descriptor, the handler, the state machine.
// Teardown happens in one place (`teardown`), exactly once, and releases every queued slice. A connection whose
// output is cut (abort, a write stall, a close deadline, the shutdown deadline) ends with a reset, never with a
// clean FIN after partial output. Every connection is held to its time bounds (ConnectionTimeouts) by its loop's
// sweep.
import Glibc
import Synchronization

public final class Connection: @unchecked Sendable, Selectable {
    // Stored properties are laid out in declaration order. The ones every request touches come first, so the read,
    // the append and the flush of one request touch two or three of this object's cache lines rather than eight:
    // in 1,000-connection ping-pong, where the kernel's socket state evicts ours between requests, each line was a
    // likely miss (BENCHMARKS.md, "Pinned ping-pong: where the user time went").
    public let loop: EventLoop
    let chain: WriteChain
    private var handler: (any ConnectionHandler)?
    /// The handler object's address while it is set, for the loop's prefetch of the next event's handler (never
    /// dereferenced: see EventLoop's prefetching).
    private(set) var handlerAddress: UnsafeRawPointer?
    /// The raw descriptor number while open (-1 after close); for logs and fault injection in tests.
    /// Unchecked exclusivity: set on the loop only, by plain stores (see EventLoop's loop-only state); each read
    /// of it for a syscall was a runtime access check.
    @exclusivity(unchecked) public private(set) var fd: Int32
    private var interest: UInt32 = 0
    // Loop only.
    private enum State { case connecting, open, closed }
    /// What was asked for the output: nothing, a half-close, a close once the output is sent (appends still
    /// accepted until then), or a close (appends refused from the call on).
    private enum CloseIntent { case none, shutdownOutput, closeAfterOutput, close }
    private var state: State
    private var isFlushing = false
    private var loopWritable = true
    private var inputClosed = false
    private var readingPaused = false
    /// Paused by the loop because its read memory is over budget (separate from the handler's own pause).
    private var memoryPaused = false
    /// SO_ZEROCOPY was set on the socket (it cannot be unset).
    private var zeroCopySocketOn = false
    private var closeIntent = CloseIntent.none
    /// True while the loop runs this connection's `ready` (loop only).
    private var dispatching = false
    /// Set when this connection's own handler made the chain non-empty during `ready`: it is flushed when `ready`
    /// returns, not from the loop's ready stack (loop only; cleared by any flush).
    private var flushAfterDispatch = false
    /// Whether a reply written during a dispatch may be held aside by the chain (`WriteChain.holdFront`): not under a
    /// copy control, whose staging copy must be made for every send (the profiler's checks must catch it).
    private let holdsReplies: Bool
    /// A teardown was asked for during a flush, and waits for it to end (`deferredTeardown` says why).
    private var teardownDeferred = false
    /// Mirror of `WaitState.writable` for the lock-free `isWritable` (written by the loop under the lock;
    /// relaxed: a hint whose staleness is covered by `waitUntilWritable` re-checking under the lock). Among the
    /// flags: a handler that checks `isWritable` after each write reads it every request.
    private let writableFlag = Atomic<Bool>(true)
    /// Loop iteration times of the last byte read or written, of the last sign of write progress (bytes taken, or
    /// nothing pending), and of the close request.
    private var lastActivity: UInt64 = 0
    private var lastWriteProgress: UInt64 = 0
    /// Bytes this connection retained from its loop's read buffers that are still held (see ReadBuffer); changed
    /// by the loop when it retains and by whichever thread frees a buffer. Relaxed: it feeds the budget's choice only.
    let readBytesHeld = Atomic<Int>(0)
    public let highWatermark: Int
    public let lowWatermark: Int
    /// The MSG_ZEROCOPY threshold in force (nil: zero copy off, or never turned on).
    private var zeroCopyThreshold: Int?
    /// The counters; a flush adds its first four, and the rest only when one of them moved (FlushStats.+=).
    /// Unchecked exclusivity: loop only, and only ever read or `+=`'d (see EventLoop's loop-only state).
    @exclusivity(unchecked) private var loopStats = ConnectionStats()

    // Colder: set up once, or touched on state changes only.
    /// Link in the loop's ready stack (see EventLoop.scheduleFlush): written by the one party that pushes the
    /// connection, read by the loop after its acquiring take.
    var readyNext: UInt = 0
    /// True while the connection is on its loop's ready stack (see EventLoop.scheduleFlush).
    let flushQueued = Atomic<Bool>(false)
    private var deferredTeardown: ReactorError?
    public let id: UInt64
    /// True for connections made with `ReactorPool.connect`.
    public let isClient: Bool

    /// Writability as the loop decided it, and the tasks waiting for it (any thread, under the lock).
    private struct WaitState {
        var writable = true
        var closed = false
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextWaiter: UInt64 = 0
    }
    private let waitState = Locked(WaitState())

    private var descriptor: FileDescriptor?
    private var registration: Registration?
    /// True when this accepted connection holds a place in the pool's `maxConnections`.
    var admitted = false
    private var timeouts: ConnectionTimeouts
    private var closeRequested: UInt64?
    private var outputClosed = false
    private var connectTimer: TimerID?
    /// Per-connection counters (loop only: checked in debug builds; other threads use `statistics()`).
    public var stats: ConnectionStats {
        assert(loop.inLoop, "Connection.stats is loop only; use statistics() from other threads")
        return loopStats
    }
    /// True once the connection was established (a failed client connect never is).
    public private(set) var wasEstablished = false

    private static let ids = Atomic<UInt64>(1)
    /// Process-wide connection ids (relaxed: only uniqueness matters).
    static func nextID() -> UInt64 { ids.wrappingAdd(1, ordering: .relaxed).oldValue }

    /// The peer's address and ours (nil only if the kernel could not say).
    public let remoteAddress: SocketAddress?
    public let localAddress: SocketAddress?

    init(id: UInt64, descriptor: consuming FileDescriptor, loop: EventLoop, connecting: Bool,
         remote: SocketAddress?, local: SocketAddress?) {
        self.id = id
        remoteAddress = remote
        localAddress = local
        self.loop = loop
        self.isClient = connecting
        self.fd = descriptor.raw
        self.descriptor = consume descriptor
        self.state = connecting ? .connecting : .open
        let config = loop.configuration
        highWatermark = config.highWatermark
        lowWatermark = config.lowWatermark
        chain = WriteChain(highWatermark: config.highWatermark, hardCap: config.writeBufferHardCap)
        holdsReplies = config.copyControl == nil
        timeouts = config.timeouts
    }

    // MARK: writing (any thread)

    /// The chain went from idle to non-empty: get it flushed. An append made by this connection's own handler
    /// while the loop dispatches its events (a reply to what it just read, the usual shape) is flushed as soon as
    /// the dispatch returns, as NIO flushes at the end of a channel's read. Then the connection's state, its chain
    /// and its socket are still in cache. Behind the loop's ready stack, flushed after every other connection's
    /// events, each of them was a cache miss again: in 1,000-connection ping-pong that cost more than the rest
    /// of the user-space work together (BENCHMARKS.md). Anything else (another thread, another connection's
    /// handler, a task) goes on the ready stack. `inLoop` first: only the loop thread may read `dispatching`.
    @inline(__always)
    private func flushSoon() {
        if loop.inLoop && dispatching {
            flushAfterDispatch = true
        } else {
            loop.scheduleFlush(self)
        }
    }

    /// Queues one slice. Never copies; the slice is released exactly once (see `SliceObserver`).
    /// Throws, after releasing the slice, when the connection is closed or the hard cap would be exceeded.
    public func write(_ slice: consuming Slice) throws(ReactorError) {
        if slice.copiedBytes > 0 { loop.bytesCopied.wrappingAdd(slice.copiedBytes, ordering: .relaxed) }
        if loop.inLoop {
            // The reply to what this dispatch read, to an idle chain: held by the chain for the flush at the end of
            // the dispatch, outside its lock-free list (`WriteChain.holdFront`). Any other write made on the loop
            // first moves a held reply into the list, so it stays ahead of what follows.
            if mayHoldReply && chain.holdFront(slice, zeroCopyThreshold: zeroCopyThreshold) {
                flushAfterDispatch = true
                return
            }
            chain.spillFront()
        }
        switch chain.append(slice) {
        case .becameNonEmpty: flushSoon()
        case .queued: break
        case .refused(let error): throw error
        }
    }

    /// Writes bytes just read, retained, to this connection: what `write(bytes.retainedSlice())` does (the bytes
    /// are charged to the connection that read them, and no byte is copied), without making a Slice when the reply
    /// can be held for the end of the dispatch (see *Threading rules*). Call it during the `didRead` callback.
    public func write(_ bytes: InboundBytes) throws(ReactorError) {
        // Lent, not taken, when they are this dispatch's own reply: neither the buffer's reference nor the charge is
        // needed for a send that takes all of it at the end of the dispatch, and every other way owns them first
        // (WriteChain's lent front). `dispatching` says they are the bytes of this connection's read.
        if loop.inLoop && mayHoldReply && bytes.wasReadBy(self)
            && chain.canHoldFront(count: bytes.count, zeroCopyThreshold: zeroCopyThreshold) {
            chain.lendFront(bytes)
            flushAfterDispatch = true
            return
        }
        try write(bytes.retainedSlice())
    }

    /// Whether a write made now on the loop may be held by the chain for the flush at the end of this dispatch
    /// (loop only).
    private var mayHoldReply: Bool { dispatching && !isFlushing && state == .open && holdsReplies }

    /// Queues a whole message in one atomic step: messages written from different threads never interleave.
    /// The message is left empty.
    public func write(_ message: inout OutboundMessage) throws(ReactorError) {
        if message.copiedBytes > 0 { loop.bytesCopied.wrappingAdd(message.copiedBytes, ordering: .relaxed) }
        if loop.inLoop { chain.spillFront() }
        switch chain.append(&message) {
        case .becameNonEmpty: flushSoon()
        case .queued: break
        case .refused(let error): throw error
        }
    }

    /// Copies `bytes` into a new buffer and queues that: for callers who cannot keep the borrowing contract.
    /// The copy is counted in `LoopCounters.bytesCopied` (and is what `zcr profile --copy-control` measures).
    public func writeCopying(_ bytes: UnsafeRawBufferPointer) throws(ReactorError) {
        guard bytes.count > 0 else { return }
        let slice = Slice(copyOf: bytes)
        loop.bytesCopied.wrappingAdd(bytes.count, ordering: .relaxed)
        try write(slice)
    }

    /// Bytes queued and not yet accepted by the kernel (cross-thread appends count as soon as they are made). On
    /// other threads, a reply the loop holds for the end of its dispatch (`WriteChain.holdFront`) counts once it is
    /// sent or queued: within the same dispatch.
    public var pendingBytes: Int { loop.inLoop ? chain.pending + chain.frontBytes : chain.pending }

    /// False from the moment the pending bytes reach the high watermark until they fall to the low one.
    public var isWritable: Bool {
        chain.pending < highWatermark && writableFlag.load(ordering: .relaxed)
    }

    /// Returns when the connection is writable; throws `ReactorError.connectionClosed` if it closes first, and
    /// `CancellationError` at once if the waiting task is cancelled (the connection is left as it is).
    public func waitUntilWritable() async throws {
        let id = waitState.withLock { s -> UInt64 in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resume: Result<Void, any Error>? = waitState.withLock { s in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if s.closed { return .failure(ReactorError.connectionClosed) }
                    if s.writable && chain.pending < highWatermark { return .success(()) }
                    s.waiters.append((id, continuation))
                    return nil
                }
                if let resume { continuation.resume(with: resume) }
            }
        } onCancel: {
            let waiter = waitState.withLock { s -> CheckedContinuation<Void, any Error>? in
                guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: i).continuation
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    // MARK: closing (any thread)

    /// Graceful close: sends what is queued, shuts the write side down, then closes. Later writes are refused.
    public func close() {
        chain.refuseNewAppends()
        onLoop { $0.requestClose(.close) }
    }

    /// Graceful close once the output is done: what is queued is sent, writes are still accepted until the chain is
    /// empty (a handler answering writability keeps going), then the write side is shut down and the connection
    /// closes. The default reaction to the peer's end of input and to the pool's drain.
    public func closeAfterOutput() {
        onLoop { $0.requestClose(.closeAfterOutput) }
    }

    /// Sends of at least `threshold` bytes ask the kernel for MSG_ZEROCOPY on this connection (nil: never). Any
    /// thread; applied on the loop. See ``ReactorConfiguration/zeroCopyThreshold`` for what it changes: slices are
    /// then released only when the kernel's completion arrives, later than `sliceWritten`.
    public func setZeroCopyThreshold(_ threshold: Int?) {
        onLoop { c in
            guard c.state != .closed else { return }
            c.applyZeroCopy(threshold)
        }
    }

    /// Changes this connection's time bounds (any thread; applied on the loop). The clock of each bound starts over.
    public func setTimeouts(_ timeouts: ConnectionTimeouts) {
        onLoop { c in
            guard c.state != .closed else { return }
            c.timeouts = timeouts
            let now = EventLoop.now()
            c.lastActivity = now
            c.lastWriteProgress = now
            if c.closeRequested != nil { c.closeRequested = now }
            if let bound = timeouts.smallestNanos { c.loop.ensureSweep(for: bound) }
        }
    }

    /// Half-close: sends what is queued, then shuts the write side down; reading goes on until the peer closes.
    public func shutdownOutput() {
        chain.refuseNewAppends()
        onLoop { $0.requestClose(.shutdownOutput) }
    }

    /// Closes now with a reset; queued slices are released with `.aborted`.
    public func abort() {
        chain.refuseNewAppends()
        onLoop { $0.teardown(.aborted) }
    }

    /// Stops reading (the peer's sends then fill the kernel buffers and stall): inbound backpressure.
    public func pauseReading() { onLoop { $0.setReadingPaused(true) } }
    public func resumeReading() { onLoop { $0.setReadingPaused(false) } }

    /// Per-connection counters, read on the loop (nil once the loop has stopped, or on another loop's thread).
    public func statistics() -> ConnectionStats? { loop.submitAndWait { [self] in loopStats } }

    private func onLoop(_ body: @escaping @Sendable (Connection) -> Void) {
        if loop.inLoop {
            body(self)
        } else if !loop.execute({ [self] in body(self) }) {
            // The loop has stopped: the pool's shutdown already closed this connection.
        }
    }

    // MARK: loop side

    /// Starts an accepted connection, or a client connection (waits for the connect to complete).
    func start(handler: any ConnectionHandler, connectTimeout: UInt64?) {
        loop.preconditionInLoop()
        self.handler = handler
        handlerAddress = UnsafeRawPointer(Unmanaged.passUnretained(handler as AnyObject).toOpaque())
        if loop.isStopping {
            teardown(.poolShutdown)
            return
        }
        let config = loop.configuration
        if let size = config.socketSendBuffer { try? Sys.setOption(fd, level: SOL_SOCKET, name: SO_SNDBUF, value: size) }
        if let size = config.socketReceiveBuffer { try? Sys.setOption(fd, level: SOL_SOCKET, name: SO_RCVBUF, value: size) }
        if let threshold = config.zeroCopyThreshold { applyZeroCopy(threshold) }
        let events = state == .connecting ? Epoll.output : (Epoll.input | Epoll.readHangup)
        do {
            registration = try loop.register(fd: fd, events: events, self)
            interest = events
        } catch {
            teardown(.system(error))
            return
        }
        if state == .connecting {
            if let timeout = connectTimeout {
                connectTimer = loop.scheduleTimer(after: timeout) { [self] in
                    connectTimer = nil
                    if state == .connecting { teardown(.connectTimeout) }
                }
            }
        } else {
            opened()
        }
    }

    /// Fails a connection that never got going (for a connect that failed at once).
    func fail(handler: any ConnectionHandler, error: ReactorError) {
        self.handler = handler
        teardown(error)
    }

    private func opened() {
        state = .open
        wasEstablished = true
        lastActivity = loop.iterationStart
        lastWriteProgress = lastActivity
        if let bound = timeouts.smallestNanos { loop.ensureSweep(for: bound) }
        loop.counters.connectionsOpen += 1
        if isClient { loop.counters.connectionsConnected += 1 } else { loop.counters.connectionsAccepted += 1 }
        handler?.connectionOpened(self)
        if state == .open { flushNow() }
    }

    func ready(events: UInt32) {
        if state == .connecting {
            completeConnect()
            return
        }
        dispatching = true
        dispatch(events: events)
        dispatching = false
        if flushAfterDispatch && state == .open {
            if chain.frontBytes > 0 { sendHeldReply() } else { flushNow() }
        }
    }

    private func dispatch(events: UInt32) {
        var events = events
        // MSG_ZEROCOPY completions arrive on the error queue, which raises EPOLLERR without a socket error: once
        // they are read, and if the socket has no error, the event is not an error (and must not read past a pause).
        if events & Epoll.error != 0 && zeroCopySocketOn && state == .open, readCompletions(),
           ((try? Sys.getOption(fd, level: SOL_SOCKET, name: SO_ERROR)) ?? 0) == 0 {
            events &= ~Epoll.error
            if events == 0 { return }
        }
        let hangup = events & (Epoll.error | Epoll.hangup) != 0
        if events & (Epoll.input | Epoll.readHangup) != 0 || hangup {
            if !inputClosed && ((!readingPaused && !memoryPaused) || hangup) { readAvailable() }
        }
        if state == .open && events & Epoll.output != 0 { flushNow() }
        if state == .open && events & Epoll.error != 0 {
            let code = (try? Sys.getOption(fd, level: SOL_SOCKET, name: SO_ERROR)) ?? 0
            teardown(.system(SystemError(errno: code == 0 ? ECONNRESET : code, call: "epoll")))
        } else if state == .open && events & Epoll.hangup != 0 && inputClosed
                    && chain.pending + chain.frontBytes > 0 {
            teardown(.system(SystemError(errno: EPIPE, call: "epoll")))
        }
    }

    private func completeConnect() {
        let code: Int32
        do { code = try Sys.getOption(fd, level: SOL_SOCKET, name: SO_ERROR) } catch { code = error.errno }
        if code != 0 {
            teardown(.system(SystemError(errno: code, call: "connect")))
            return
        }
        if let t = connectTimer { loop.cancelTimer(t); connectTimer = nil }
        setInterest(Epoll.input | Epoll.readHangup)
        opened()
    }

    private func readAvailable() {
        // Up to four reads while each fills its region, then give the other connections their turn.
        for _ in 0..<4 {
            guard state == .open, !inputClosed else { return }
            let (buffer, offset, region) = loop.readBuffers.nextRegion()
            let result: IOResult<Int>
            do {
                result = try Sys.read(fd, into: region)
            } catch {
                teardown(.system(error))
                return
            }
            guard case .processed(let n) = result else { return }
            loop.counters.reads += 1
            if n == 0 {
                inputClosed = true
                handler?.connectionDidReachEnd(self)
                // Level-triggered epoll would report the end again and again: stop watching for input, unless the
                // handler's answer (usually a close) already ended the connection, which then costs no epoll_ctl.
                if state == .open { setInterest(interest & ~(Epoll.input | Epoll.readHangup)) }
                // Both directions are done once the write side was shut down too.
                if state == .open && outputClosed { teardown(nil) }
                return
            }
            loop.counters.bytesRead += n
            loopStats.bytesRead += n
            lastActivity = loop.iterationStart
            handler?.connection(self, didRead: InboundBytes(
                bytes: UnsafeRawBufferPointer(rebasing: region[0..<n]), buffer: buffer, offset: offset,
                connection: Unmanaged.passUnretained(self)))
            if n < region.count || readingPaused || memoryPaused { return }
            // The next read may go into the same memory: a reply still lent from it is owned first.
            chain.ownLentFront()
        }
    }

    /// Flushes the chain (called by the loop when the connection is ready, on EPOLLOUT, and after connect).
    func flushNow() {
        flushAfterDispatch = false
        guard state == .open, !chain.isSealed, !isFlushing else { return }
        isFlushing = true
        var flushed = FlushStats()
        // The three fields, not `let config = loop.configuration`: a copy of the whole configuration retains and
        // releases everything it holds (the logger's handler and label, ...) on every flush, about 0.7% of the
        // server's samples in pinned ping-pong (swift_retain/release and its value-witness copy under flushNow).
        let options = FlushOptions(
            verify: loop.configuration.verifyIovecs, copyControl: loop.configuration.copyControl,
            zeroCopyThreshold: zeroCopyThreshold)
        let outcome = chain.flush(
            iov: loop.iov, budget: loop.configuration.writeSpinBudget, options: options, stats: &flushed,
            io: SocketIO(fd: fd))
        isFlushing = false
        afterFlush(outcome, &flushed)
    }

    /// The usual end of a dispatch: the reply the chain holds (`WriteChain.holdFront`), most often all there is.
    /// The same flush as `flushNow`, in a function of its own whose common path is a few lines of code: with
    /// 1,000 connections the kernel's work between two requests evicts our code from the first-level caches, and
    /// each line of code a request runs is a miss (cachegrind with caches that small: 22 of the 155 lines a
    /// ping-pong request ran were `flushNow`'s, most of them its general loop over the list).
    private func sendHeldReply() {
        flushAfterDispatch = false
        guard !chain.isSealed, !isFlushing else {
            chain.ownLentFront()  // not sent now: it outlives the dispatch (neither happens while a reply is held)
            return
        }
        isFlushing = true
        var flushed = FlushStats()
        let outcome = chain.flushFront(
            verify: loop.configuration.verifyIovecs, stats: &flushed, io: SocketIO(fd: fd),
            rest: { _, stats in flushList(&stats) })
        isFlushing = false
        afterFlush(outcome, &flushed)
    }

    /// The chain's general flush, out of line (see `sendHeldReply`).
    @inline(never)
    private func flushList(_ stats: inout FlushStats) -> FlushOutcome {
        chain.flush(
            iov: loop.iov, budget: loop.configuration.writeSpinBudget,
            options: FlushOptions(
                verify: loop.configuration.verifyIovecs, copyControl: loop.configuration.copyControl,
                zeroCopyThreshold: zeroCopyThreshold),
            stats: &stats, io: SocketIO(fd: fd))
    }

    /// What every flush ends with: the counters, the progress times, a teardown asked for meanwhile, the interest in
    /// EPOLLOUT, writability, and a close waiting for the output.
    @inline(__always)
    private func afterFlush(_ outcome: FlushOutcome, _ flushed: inout FlushStats) {
        FlushStats.add(&flushed, to: &loopStats.write, and: &loop.counters.write)
        if flushed.bytesWritten > 0 || outcome == .drained {
            lastWriteProgress = loop.iterationStart
            if flushed.bytesWritten > 0 { lastActivity = lastWriteProgress }
        }
        if teardownDeferred {
            teardownDeferred = false
            let deferred = deferredTeardown
            teardown(deferred)
            return
        }
        switch outcome {
        case .drained:
            if interest & Epoll.output != 0 { setInterest(interest & ~Epoll.output) }
        case .wouldBlock:
            setInterest(interest | Epoll.output)
        case .budgetExhausted:
            // Still writable: continue on the next iteration, after the loop's other connections.
            setInterest(interest & ~Epoll.output)
            loop.scheduleFlush(self)
        case .failed(let error):
            teardown(error)
            return
        }
        updateWritability()
        if state == .open && closeIntent != .none && outcome == .drained { finishOutput() }
    }

    /// After every flush: nothing to do unless the writability changes, which is checked inline; the change itself
    /// (the waiters' lock, the handler's callback) is out of line, so the common flush never touches it.
    @inline(__always)
    private func updateWritability() {
        let crossed = chain.crossedHighSet
        if loopWritable {
            if chain.pending < highWatermark && !crossed { return }
        } else if !crossed && (state != .open || chain.pending > lowWatermark) {
            return
        }
        changeWritability()
    }

    @inline(never)
    private func changeWritability() {
        let pending = chain.pending
        let crossed = chain.takeCrossedHigh()
        if loopWritable && (pending >= highWatermark || crossed) {
            loopWritable = false
            waitState.withLock {
                $0.writable = false
                writableFlag.store(false, ordering: .relaxed)
            }
            handler?.connection(self, writabilityChanged: false)
        }
        if state == .open && !loopWritable && chain.pending <= lowWatermark {
            loopWritable = true
            let waiters = waitState.withLock { s -> [CheckedContinuation<Void, any Error>] in
                s.writable = true
                writableFlag.store(true, ordering: .relaxed)
                defer { s.waiters.removeAll() }
                return s.waiters.map(\.continuation)
            }
            for w in waiters { w.resume() }
            handler?.connection(self, writabilityChanged: true)
        }
    }

    private func requestClose(_ intent: CloseIntent) {
        switch state {
        case .closed: return
        case .connecting: teardown(nil)
        case .open:
            if intent == .close || closeIntent == .none || (closeIntent == .shutdownOutput && intent == .closeAfterOutput) {
                closeIntent = intent
            }
            if closeRequested == nil {
                closeRequested = loop.iterationStart
                if let bound = timeouts.closeNanos { loop.ensureSweep(for: bound) }
            }
            finishOutput()
        }
    }

    /// The pool is shutting down: the handler decides how to drain (by default, close once the output is sent).
    func beginDrain() {
        guard state != .closed else { return }
        if let handler { handler.connectionWillDrain(self) } else { requestClose(.closeAfterOutput) }
    }

    /// The loop's sweep: ends the connection if one of its time bounds has passed (loop only).
    func checkTimeBounds(now: UInt64) {
        guard state == .open else { return }
        if let bound = timeouts.closeNanos, let asked = closeRequested, now &- asked >= bound {
            loop.counters.closeTimeouts += 1
            teardown(.closeTimeout)
        } else if let bound = timeouts.writeStallNanos, chain.pending > 0, now >= lastWriteProgress,
                  now - lastWriteProgress >= bound, !tookBytesNow() {
            loop.counters.writeStallTimeouts += 1
            teardown(.writeStalled)
        } else if let bound = timeouts.idleNanos, chain.pending == 0, now >= lastActivity, now - lastActivity >= bound {
            loop.counters.idleTimeouts += 1
            teardown(.idleTimeout)
        }
    }

    /// Before calling a write stalled, try once: epoll reports the socket writable only once half its send buffer
    /// is free, so a peer that reads slowly but steadily can take bytes for a long time without the loop being told.
    /// True if the kernel took some now.
    private func tookBytesNow() -> Bool {
        guard !isFlushing else { return true }
        let before = loopStats.write.bytesWritten
        flushNow()
        return state != .open || loopStats.write.bytesWritten > before
    }

    // MARK: MSG_ZEROCOPY (loop only)

    private func applyZeroCopy(_ threshold: Int?) {
        guard let threshold else {
            zeroCopyThreshold = nil
            chain.zeroCopyEnabled = false
            return
        }
        if zeroCopyThreshold == nil && !zeroCopySocketOn {
            do {
                try Sys.enableZeroCopy(fd)
                zeroCopySocketOn = true
                chain.zeroCopyEnabled = true
            } catch {
                // Not a TCP socket the kernel can do it for: count it and send as usual.
                loop.counters.zeroCopyRefused += 1
                return
            }
        }
        zeroCopyThreshold = threshold
    }

    /// Reads every message on the error queue. True if any was a zero-copy completion and none an error.
    private func readCompletions() -> Bool {
        var any = false
        var stats = FlushStats()
        defer { FlushStats.add(&stats, to: &loopStats.write, and: &loop.counters.write) }
        while true {
            let message: Sys.ErrorQueueMessage?
            do { message = try Sys.readErrorQueue(fd) } catch { return false }
            switch message {
            case nil: return any
            case .zeroCopy(let low, let high, let copied)?:
                chain.completeZeroCopy(low: low, high: high, copied: copied, stats: &stats)
                any = true
            case .other?:
                return false
            }
        }
    }

    // MARK: read memory (loop only)

    /// True when pausing this connection's reading would stop it from retaining more read memory.
    var canPauseForMemory: Bool { state == .open && !inputClosed && !memoryPaused }

    func setPausedForMemory(_ paused: Bool) {
        guard memoryPaused != paused else { return }
        memoryPaused = paused
        guard state == .open, !inputClosed, !readingPaused else { return }
        let read = Epoll.input | Epoll.readHangup
        setInterest(paused ? interest & ~read : interest | read)
    }

    /// With a close requested: once the chain is idle and empty, seal it, shut the write side, and close if
    /// asked to (or if the peer has closed too). Otherwise the next drained flush comes back here.
    private func finishOutput() {
        guard state == .open, !isFlushing else { return }
        guard chain.sealIfIdle() else { return }
        // After the peer's end of input nothing unread can remain, so close() itself sends the FIN: the
        // shutdown(SHUT_WR) would be a syscall for nothing. Otherwise shut the write side first, so that a close
        // with unread input (which resets the connection) comes after every queued byte and the FIN.
        if !outputClosed && inputClosed {
            outputClosed = true
            teardown(nil)
            return
        }
        if !outputClosed {
            outputClosed = true
            do { try Sys.shutdownWrite(fd) } catch {
                teardown(error.errno == ENOTCONN ? nil : .system(error))
                return
            }
        }
        if closeIntent != .shutdownOutput || inputClosed { teardown(nil) }
    }

    private func setReadingPaused(_ paused: Bool) {
        guard state != .closed, readingPaused != paused else { return }
        readingPaused = paused
        guard state == .open, !inputClosed, !memoryPaused else { return }
        let read = Epoll.input | Epoll.readHangup
        setInterest(paused ? interest & ~read : interest | read)
    }

    private func setInterest(_ events: UInt32) {
        guard events != interest, let registration, state != .closed else { return }
        do {
            try loop.modify(fd: fd, registration, events: events)
            interest = events
        } catch {
            teardown(.system(error))
        }
    }

    /// The one way a connection ends: exactly once, releasing every queued slice, then telling the handler.
    func teardown(_ error: ReactorError?) {
        guard state != .closed else { return }
        if isFlushing {
            if !teardownDeferred {
                teardownDeferred = true
                deferredTeardown = error
            }
            return
        }
        let wasOpen = state == .open && wasEstablished
        state = .closed
        if let error, error != .aborted {
            loop.configuration.logger.debug("connection closed", metadata: ["id": "\(id)", "error": "\(error)"])
        }
        if let t = connectTimer { loop.cancelTimer(t); connectTimer = nil }
        chain.failAll(error ?? .connectionClosed)
        if let registration { loop.deregister(fd: fd, registration) }
        registration = nil
        // Output cut short ends with a reset (SO_LINGER 0), so the peer can tell it from a complete reply.
        let reset = error.map(Self.endsWithReset) ?? false
        if reset, fd >= 0 {
            try? Sys.setResetOnClose(fd)
            if wasOpen { loop.counters.connectionsAborted += 1 }
        }
        if chain.awaitingCount > 0, let d = descriptor.take() {
            // MSG_ZEROCOPY sends still pin slices: the descriptor stays open until their completions arrive (or
            // the completion deadline), and the connection is over for everyone else now.
            CompletionLinger.start(descriptor: d, chain: chain, loop: loop, reset: reset, outputDone: outputClosed)
        }
        if let d = descriptor.take() { d.close() }
        fd = -1
        if wasOpen {
            loop.counters.connectionsOpen -= 1
            loop.counters.connectionsClosed += 1
        }
        if admitted {
            admitted = false
            loop.admission?.leave()
        }
        let waiters = waitState.withLock { s -> [CheckedContinuation<Void, any Error>] in
            s.closed = true
            defer { s.waiters.removeAll() }
            return s.waiters.map(\.continuation)
        }
        for w in waiters { w.resume(throwing: ReactorError.connectionClosed) }
        let h = handler
        handler = nil
        handlerAddress = nil
        h?.connectionClosed(self, error: error)
    }

    /// The errors that end a connection with a reset: its output was cut short.
    static func endsWithReset(_ error: ReactorError) -> Bool {
        switch error {
        case .aborted, .writeStalled, .closeTimeout, .fileTruncated: return true
        default: return false
        }
    }

    /// True once closed (loop only).
    public var isClosed: Bool {
        assert(loop.inLoop, "Connection.isClosed is loop only")
        return state == .closed
    }
}

/// A connection's socket as the write chain's syscalls.
struct SocketIO: FlushIO {
    let fd: Int32

    @inline(__always)
    func send(_ iov: UnsafeMutableBufferPointer<iovec>, zeroCopy: Bool) throws(SystemError) -> IOResult<Int> {
        if zeroCopy { return try Sys.sendmsgZeroCopy(fd, iov) }
        if iov.count == 1 { return try Sys.send(fd, iov[0].iov_base, iov[0].iov_len) }
        return try Sys.sendmsg(fd, iov)
    }

    func sendFile(_ file: Int32, offset: Int64, count: Int) throws(SystemError) -> IOResult<Int> {
        try Sys.sendfile(fd, from: file, offset: offset, count: count)
    }
}
