// The async/await face of one connection: inbound bytes as an AsyncSequence of retained slices with backpressure
// (the loop stops reading while the consumer is more than `inboundLimit` bytes behind), writes that suspend while
// the connection is above its high watermark, and a write that returns once its slices were released.
// The callback core stays underneath: this file only adapts it; it never copies bytes.

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

    /// Writes once the connection is writable (suspends while it is above its high watermark).
    /// Cancelling the waiting task aborts the connection.
    public func write(_ slice: Slice) async throws {
        try await waitUntilWritable()
        try connection.write(slice)
    }

    /// Writes a whole message (one atomic append), once the connection is writable.
    public func write(_ message: consuming OutboundMessage) async throws {
        try await waitUntilWritable()
        var m = message
        try connection.write(&m)
    }

    /// Suspends while the connection is above its high watermark; cancellation aborts the connection.
    public func waitUntilWritable() async throws {
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
            public mutating func next() async throws -> Slice? { try await bridge.next() }
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

/// Between the loop (producer of slices) and one consuming task. The loop pauses reading once `limit` bytes wait,
/// and the consumer resumes it when they fall to half.
final class InboundBridge: ConnectionHandler, @unchecked Sendable {
    private struct State {
        var buffered: [Slice] = []
        var head = 0
        var bytes = 0
        var paused = false
        var finished = false
        var error: ReactorError?
        /// Unsafe (not Checked) continuations: a checked one allocates a canary object per wait, i.e. per read.
        /// Each is resumed exactly once: it is taken out of the state under the lock by whoever resumes it.
        var waiter: UnsafeContinuation<Slice?, any Error>?
    }
    private let state = Locked(State())
    let connection: Connection
    let limit: Int
    /// Told (on the loop) when the connection opened; used by `ReactorPool.serve` to start the child task.
    var onOpen: ((Connection) -> Void)?

    init(connection: Connection, limit: Int) {
        self.connection = connection
        self.limit = limit
    }

    // Loop side.

    func connectionOpened(_ connection: Connection) { onOpen?(connection) }

    func connection(_ connection: Connection, didRead bytes: InboundBytes) {
        let slice = bytes.retainedSlice()
        let (waiter, pause) = state.withLock { s -> (UnsafeContinuation<Slice?, any Error>?, Bool) in
            if let w = s.waiter {
                s.waiter = nil
                return (w, false)
            }
            s.buffered.append(slice)
            s.bytes += slice.count
            if !s.paused && s.bytes >= limit {
                s.paused = true
                return (nil, true)
            }
            return (nil, false)
        }
        waiter?.resume(returning: slice)
        if pause { connection.pauseReading() }
    }

    func connectionDidReachEnd(_ connection: Connection) {
        finish(error: nil)
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) {
        finish(error: error)
    }

    private func finish(error: ReactorError?) {
        let waiter = state.withLock { s -> UnsafeContinuation<Slice?, any Error>? in
            if s.finished { return nil }
            s.finished = true
            s.error = error
            defer { s.waiter = nil }
            return s.waiter
        }
        if let waiter {
            if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
        }
    }

    // Consumer side.

    func next() async throws -> Slice? {
        enum Step { case slice(Slice, resume: Bool), end(ReactorError?), wait }
        let step = state.withLock { s -> Step in
            if s.head < s.buffered.count {
                let slice = s.buffered[s.head]
                s.head += 1
                s.bytes -= slice.count
                if s.head == s.buffered.count {
                    s.buffered.removeAll(keepingCapacity: true)
                    s.head = 0
                }
                let resume = s.paused && s.bytes <= limit / 2
                if resume { s.paused = false }
                return .slice(slice, resume: resume)
            }
            if s.finished { return .end(s.error) }
            return .wait
        }
        switch step {
        case .slice(let slice, let resume):
            if resume { connection.resumeReading() }
            return slice
        case .end(let error):
            if let error, error != .aborted || !Task.isCancelled { throw error }
            return nil
        case .wait:
            return try await withTaskCancellationHandler {
                try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Slice?, any Error>) in
                    let immediate = state.withLock { s -> Result<Slice?, ReactorError>? in
                        if s.head < s.buffered.count {
                            let slice = s.buffered[s.head]
                            s.head += 1
                            s.bytes -= slice.count
                            return .success(slice)
                        }
                        if s.finished { return s.error.map { .failure($0) } ?? .success(nil) }
                        s.waiter = continuation
                        return nil
                    }
                    if let immediate { continuation.resume(with: immediate.mapError { $0 as any Error }) }
                }
            } onCancel: {
                connection.abort()
            }
        }
    }
}
