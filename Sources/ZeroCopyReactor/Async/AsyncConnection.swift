// The async/await face of one connection: inbound bytes as an AsyncSequence of retained slices with backpressure
// (the loop stops reading while the consumer is more than `inboundLimit` bytes behind), writes that suspend while
// the connection is above its high watermark, and a write that returns once its slices were released.
// The callback core stays underneath: this file only adapts it; it never copies bytes.
// Every async function here keeps its frame small: a task parked in `next()` holds these frames (in its task
// allocator's slabs) for as long as its connection is idle, so that is what an idle connection costs.
import Synchronization

public final class AsyncConnection: Sendable {
    public let connection: Connection
    /// What the peer sends, as slices that keep the loop's read buffers alive (no copy).
    public let inbound: Inbound
    let bridge: InboundBridge

    init(connection: Connection, inboundLimit: Int) {
        self.connection = connection
        bridge = InboundBridge(connection: connection, limit: inboundLimit)
        inbound = Inbound(bridge: bridge)
    }

    /// The peer's address and ours.
    public var remoteAddress: SocketAddress? { connection.remoteAddress }
    public var localAddress: SocketAddress? { connection.localAddress }

    /// Changes this connection's time bounds (idle, write stall, close); each ends it with its typed error, which
    /// the inbound sequence and a waiting write throw.
    public func setTimeouts(_ timeouts: ConnectionTimeouts) { connection.setTimeouts(timeouts) }

    /// Writes once the connection is writable (suspends while it is above its high watermark).
    /// Cancelling the waiting task aborts the connection.
    /// Not inlined: its locals would grow the caller's async frame, which an idle handler keeps.
    @inline(never)
    nonisolated(nonsending) public func write(_ slice: Slice) async throws {
        try await waitUntilWritable()
        try connection.write(slice)
    }

    /// Writes a whole message (one atomic append), once the connection is writable.
    @inline(never)
    nonisolated(nonsending) public func write(_ message: consuming OutboundMessage) async throws {
        try await waitUntilWritable()
        var m = message
        try connection.write(&m)
    }

    /// Suspends while the connection is above its high watermark; cancellation aborts the connection.
    nonisolated(nonsending) public func waitUntilWritable() async throws {
        if connection.isWritable { return }
        try await withTaskCancellationHandler {
            try await connection.waitUntilWritable()
        } onCancel: {
            connection.abort()
        }
    }

    /// Writes `slice` and returns once the library released it (the kernel took every byte, or the write failed,
    /// in which case this throws the error). After it returns the caller may reuse the memory.
    public func writeAndAwaitRelease(_ slice: Slice) async throws {
        try await waitUntilWritable()
        let waiter = ReleaseWaiter()
        var s = slice
        s.observer = waiter
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                waiter.arm(continuation)
                do { try connection.write(s) } catch {}  // a refused write releases at once: the waiter hears it
            }
        } onCancel: {
            connection.abort()  // releases the slice with .aborted, which resumes the waiter
        }
    }

    /// The handler threw (not a cancellation): counted, logged with the connection's identity, and the connection
    /// is aborted. A plain function, so that none of this is in the handler task's async frame.
    @inline(never)
    func handlerFailed(_ error: any Error) {
        if !(error is CancellationError) {
            connection.loop.handlerFailures.wrappingAdd(1, ordering: .relaxed)
            connection.loop.configuration.logger.warning("connection handler failed", metadata: [
                "connection": "\(connection.id)", "peer": "\(remoteAddress.map { "\($0)" } ?? "?")",
                "error": "\(error)"])
        }
        abort()
    }

    public func close() { connection.close() }
    public func shutdownOutput() { connection.shutdownOutput() }
    public func abort() { connection.abort() }

    /// The inbound byte stream. One consumer at a time.
    public struct Inbound: AsyncSequence, Sendable {
        public typealias Element = Slice
        let bridge: InboundBridge

        public func makeAsyncIterator() -> Iterator { Iterator(bridge: bridge) }

        public struct Iterator: AsyncIteratorProtocol {
            let bridge: InboundBridge
            @inline(never)
            nonisolated(nonsending) public mutating func next() async throws -> Slice? { try await bridge.next() }
            /// What `for try await` calls: directly, instead of the protocol's default that wraps `next()` in
            /// another frame.
            @inline(never)
            public mutating func next(isolation actor: isolated (any Actor)?) async throws(any Error) -> Slice? {
                try await bridge.next()
            }
        }
    }
}

/// Resumes one continuation when its slice is released.
final class ReleaseWaiter: SliceObserver, @unchecked Sendable {
    private let state = Locked<(continuation: CheckedContinuation<Void, any Error>?, result: Result<Void, ReactorError>?)>((nil, nil))

    func arm(_ continuation: CheckedContinuation<Void, any Error>) {
        let ready = state.withLock { s -> Result<Void, ReactorError>? in
            if let r = s.result { return r }
            s.continuation = continuation
            return nil
        }
        if let ready { continuation.resume(with: ready.mapError { $0 as any Error }) }
    }

    func sliceReleased(tag: UInt64, error: ReactorError?) {
        let result: Result<Void, ReactorError> = error.map { .failure($0) } ?? .success(())
        let continuation = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            s.result = result
            defer { s.continuation = nil }
            return s.continuation
        }
        continuation?.resume(with: result.mapError { $0 as any Error })
    }
}

/// What waits between the loop and the consumer, and the pause/resume decisions, as a plain value so that every
/// interleaving of the two sides can be replayed step by step in a test. Always used under `InboundBridge`'s lock.
///
/// The rule: the loop pauses reading once `limit` bytes wait; whoever takes a slice resumes it once they fall to
/// half. Every way of taking a slice goes through `take()`, so no path can drain the buffer and leave reading paused.
/// (Session 2 found the lost wake-up this rule closes: a consumer that found the buffer empty, then took a slice
/// that arrived before it parked, did not resume reading, and the connection stalled for good.)
struct InboundState {
    enum Take {
        case slice(Slice, resumeReading: Bool)
        case end(ReactorError?)
        case empty
    }

    let limit: Int
    /// Slices read and not yet taken, from `head` on. A taken slot is cleared at once: the sequence keeps no slice
    /// (and so no read buffer) it has handed out.
    private(set) var buffered: [Slice?] = []
    private var head = 0
    private(set) var bytes = 0
    private(set) var paused = false
    private(set) var finished = false
    private var error: ReactorError?
    /// Unsafe (not Checked) continuations: a checked one allocates a canary object per wait, i.e. per read.
    /// Each is resumed exactly once: it is taken out of the state under the lock by whoever resumes it.
    var waiter: UnsafeContinuation<Slice?, any Error>?
    /// Slices held by the sequence now (for tests): the slots from `head` on; those before it are cleared.
    var heldSlices: Int {
        var n = 0
        for slot in buffered where slot != nil { n += 1 }
        return n
    }
    /// True when a consumer waits with nothing buffered: an idle connection, which a drain may end.
    var consumerIsIdle: Bool { waiter != nil && head == buffered.count }

    init(limit: Int) { self.limit = limit }

    /// Loop side: `slice` was read. Returns the parked consumer to hand it to directly, or whether to pause reading.
    mutating func deliver(_ slice: Slice) -> (waiter: UnsafeContinuation<Slice?, any Error>?, pauseReading: Bool) {
        if let w = waiter {
            waiter = nil
            return (w, false)
        }
        buffered.append(slice)
        bytes += slice.count
        if !paused && bytes >= limit {
            paused = true
            return (nil, true)
        }
        return (nil, false)
    }

    /// Loop side: end of input (`nil`) or an error. Returns the parked consumer to tell, once.
    mutating func finish(error: ReactorError?) -> UnsafeContinuation<Slice?, any Error>? {
        if finished { return nil }
        finished = true
        self.error = error
        defer { waiter = nil }
        return waiter
    }

    /// Consumer side: the next slice (and whether taking it brought the buffer low enough to resume reading), the
    /// end, or nothing yet.
    mutating func take() -> Take {
        if head < buffered.count {
            let slice = buffered[head].take()!
            head += 1
            bytes -= slice.count
            if head == buffered.count {
                buffered.removeAll(keepingCapacity: true)
                head = 0
            }
            let resume = paused && bytes <= limit / 2
            if resume { paused = false }
            return .slice(slice, resumeReading: resume)
        }
        if finished { return .end(error) }
        return .empty
    }
}

/// Between the loop (producer of slices) and one consuming task; the decisions are `InboundState`'s.
///
/// Ordering of pause and resume: the loop decides to pause under the lock and then pauses at once (it is on its own
/// loop, so `pauseReading` applies immediately); a consumer decides to resume under the lock, after that decision,
/// and `resumeReading` from the consumer's thread is queued to the loop, so it runs after the pause it undoes.
final class InboundBridge: ConnectionHandler, @unchecked Sendable {
    private let state: Locked<InboundState>
    let connection: Connection
    /// Told (on the loop) when the connection opened; used by `ReactorPool.serve` to start the handler task. Called
    /// once and dropped at once: it refers to the AsyncConnection that holds this bridge, and keeping it would make
    /// a cycle that leaks every connection.
    var onOpen: ((Connection) -> Void)?
    /// Told (on the loop) when the connection closed without ever opening (a client connect that failed); dropped
    /// with `onOpen`.
    var onFailedToOpen: ((ReactorError?) -> Void)?

    init(connection: Connection, limit: Int) {
        self.connection = connection
        state = Locked(InboundState(limit: limit))
    }

    // Loop side.

    func connectionOpened(_ connection: Connection) {
        let open = onOpen
        onOpen = nil
        onFailedToOpen = nil
        open?(connection)
    }

    func connection(_ connection: Connection, didRead bytes: InboundBytes) {
        let slice = bytes.retainedSlice()
        let (waiter, pause) = state.withLock { $0.deliver(slice) }
        waiter?.resume(returning: slice)
        if pause { connection.pauseReading() }
    }

    func connectionDidReachEnd(_ connection: Connection) {
        finish(error: nil)
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) {
        let failed = onFailedToOpen
        onOpen = nil
        onFailedToOpen = nil
        failed?(error)
        finish(error: error)
    }

    /// The pool drains: a consumer waiting with nothing buffered is told the input ended, so its handler can
    /// finish and `serve` closes the connection gracefully; a busy handler goes on until the drain's deadline.
    func connectionWillDrain(_ connection: Connection) {
        let idle = state.withLock { $0.consumerIsIdle }
        if idle { finish(error: nil) }
    }

    /// Slices the sequence holds now, and whether a consumer is waiting (for tests).
    var heldSlices: Int { state.withLock { $0.heldSlices } }
    var waiting: Bool { state.withLock { $0.waiter != nil } }

    private func finish(error: ReactorError?) {
        guard let waiter = state.withLock({ $0.finish(error: error) }) else { return }
        if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
    }

    // Consumer side.

    nonisolated(nonsending) func next() async throws -> Slice? {
        switch state.withLock({ $0.take() }) {
        case .slice(let slice, let resume):
            if resume { connection.resumeReading() }
            return slice
        case .end(let error):
            return try endOfInbound(error)
        case .empty:
            return try await park()
        }
    }

    /// Waits for the loop to hand over the next slice (or the end): the only path that suspends, kept apart so
    /// that its frame is the only one an idle connection holds.
    nonisolated(nonsending) private func park() async throws -> Slice? {
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Slice?, any Error>) in
                parkOrTake(continuation)
            }
        } onCancel: {
            connection.abort()
        }
    }

    /// Something may have arrived since the look in `next`: take it the same way, or park `continuation` for the
    /// loop to resume.
    private func parkOrTake(_ continuation: UnsafeContinuation<Slice?, any Error>) {
        let step = state.withLock { s -> InboundState.Take? in
            if s.waiter != nil { return nil }  // another task waits already
            let step = s.take()
            if case .empty = step { s.waiter = continuation }
            return step
        }
        switch step {
        case nil:
            continuation.resume(throwing: ReactorError.concurrentConsumers)
        case .slice(let slice, let resume)?:
            if resume { connection.resumeReading() }
            continuation.resume(returning: slice)
        case .end(let error)?:
            continuation.resume(with: Result { try endOfInbound(error) })
        case .empty?:
            break  // parked: the loop resumes it
        }
    }

    /// The end of the inbound stream: nil, or the error (an abort caused by cancelling this task ends it quietly).
    private func endOfInbound(_ error: ReactorError?) throws -> Slice? {
        if let error, error != .aborted || !Task.isCancelled { throw error }
        return nil
    }
}
