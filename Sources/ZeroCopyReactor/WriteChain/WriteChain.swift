// A connection's write chain: a lock-free multi-producer, single-consumer list of borrowed slices.
// Any thread appends (one compare-exchange per message, so messages never interleave); only the owning loop
// takes and flushes. The flush takes its syscall as a parameter, so tests drive it with scripted results.
// It never copies bytes, never allocates, and releases each slice exactly once: after the kernel took all of
// it, or with an error when the chain fails.
import CZeroCopyShims
import Glibc
import Synchronization

/// How one flush ended.
enum FlushOutcome: Equatable {
    /// Everything queued was written and the chain is idle again: the next append will schedule a flush.
    case drained
    /// The kernel's send buffer is full (EAGAIN, or it took only part of a call): wait for EPOLLOUT.
    /// The chain stays active, so appends do not wake the loop meanwhile.
    case wouldBlock
    /// The attempt budget ran out with bytes still queued: flush again on a later loop iteration.
    case budgetExhausted
    /// The syscall failed; the caller fails the chain.
    case failed(SystemError)
}

/// What one or more flushes did; added into loop and connection counters.
public struct FlushStats: Sendable, Equatable {
    public var sendCalls = 0
    public var sendmsgCalls = 0
    public var slicesWritten = 0
    public var bytesWritten = 0
    public var partialWrites = 0
    public var wouldBlocks = 0
    public var verifiedIovecs = 0
    public var foreignIovecs = 0
    /// Slices that lay right after the previous one in memory and went out in its iovec.
    public var coalescedSlices = 0
    public init() {}

    public var syscalls: Int { sendCalls + sendmsgCalls }

    /// What happened between two readings (`later - earlier`).
    public static func - (a: FlushStats, b: FlushStats) -> FlushStats {
        var d = FlushStats()
        d.sendCalls = a.sendCalls - b.sendCalls
        d.sendmsgCalls = a.sendmsgCalls - b.sendmsgCalls
        d.slicesWritten = a.slicesWritten - b.slicesWritten
        d.bytesWritten = a.bytesWritten - b.bytesWritten
        d.partialWrites = a.partialWrites - b.partialWrites
        d.wouldBlocks = a.wouldBlocks - b.wouldBlocks
        d.verifiedIovecs = a.verifiedIovecs - b.verifiedIovecs
        d.foreignIovecs = a.foreignIovecs - b.foreignIovecs
        d.coalescedSlices = a.coalescedSlices - b.coalescedSlices
        return d
    }

    public static func += (a: inout FlushStats, b: FlushStats) {
        a.sendCalls += b.sendCalls
        a.sendmsgCalls += b.sendmsgCalls
        a.slicesWritten += b.slicesWritten
        a.bytesWritten += b.bytesWritten
        a.partialWrites += b.partialWrites
        a.wouldBlocks += b.wouldBlocks
        a.verifiedIovecs += b.verifiedIovecs
        a.foreignIovecs += b.foreignIovecs
        a.coalescedSlices += b.coalescedSlices
    }
}

/// Slices linked privately by one producer, appended to a chain in one atomic step.
/// Dropping an unsent message releases its slices (observers see `.aborted`).
public struct OutboundMessage: ~Copyable {
    /// The most recently added node; nodes link newest → oldest, the order the shared stack needs.
    var newest: NodePointer?
    var oldest: NodePointer?
    public private(set) var byteCount = 0
    public private(set) var sliceCount = 0
    /// Bytes its slices copied when they were made (tiny inline Data/String values only).
    var copiedBytes = 0

    public init() {}

    /// Adds a slice to the end of the message. A zero-length slice is not queued (it would never drain): it is
    /// released at once (`Slice.releaseEmpty`).
    public mutating func append(_ slice: consuming Slice) {
        let count = slice.bytes.count
        guard count > 0 else { return slice.releaseEmpty() }
        byteCount += count
        sliceCount += 1
        copiedBytes += slice.copiedBytes
        // The slice's last use: its owner reference moves into the node.
        let node = NodePool.take(slice, from: NodePool.currentUnmanaged)
        node.pointee.next = newest
        if oldest == nil { oldest = node }
        newest = node
    }

    /// Hands the nodes over (newest, oldest) and leaves the message empty.
    mutating func detach() -> (newest: NodePointer, oldest: NodePointer)? {
        guard let n = newest, let o = oldest else { return nil }
        newest = nil
        oldest = nil
        byteCount = 0
        sliceCount = 0
        copiedBytes = 0
        return (n, o)
    }

    deinit {
        WriteChain.releaseList(newest, error: .aborted)
    }
}

final class WriteChain: @unchecked Sendable {
    // The shared head: 0 idle, 1 active (the consumer will look again before going idle), 2 sealed (closed:
    // appends are refused), otherwise the address of the newest node of a LIFO list of published nodes.
    // Node addresses are 8-byte aligned, so they never collide with the three markers.
    static let idle: UInt = 0
    static let active: UInt = 1
    static let sealedMarker: UInt = 2

    private let head = Atomic<UInt>(WriteChain.idle)
    /// Bytes appended and not yet accepted by the kernel. Producers add when they append, before publishing;
    /// the consumer subtracts after the syscall returns. Relaxed ordering: the counter guards no memory, it
    /// only feeds backpressure decisions, and each RMW is atomic, so the sum is exact.
    private let pendingBytes = Atomic<Int>(0)

    // Consumer-only state (the owning loop thread).
    private var queueHead: NodePointer?
    private var queueTail: NodePointer?
    private(set) var isSealed = false

    /// Appends are refused with `.writeBufferFull` past this many pending bytes (nil: no cap).
    let hardCap: Int?
    /// An append that takes the pending bytes from below this to at or above it sets `crossedHigh`, so the loop
    /// reports unwritability even if it drains everything before it looks at the counter.
    let highWatermark: Int
    /// Set by producers (relaxed: a hint the loop reads after its acquiring collect of the same append).
    private let crossedHigh = Atomic<Bool>(false)
    /// Set when a close was requested: later appends are refused, while what was appended before still goes out.
    /// Release/acquire: a close followed by a write on the same thread must see it (program order suffices there);
    /// across threads it orders the refusal after whatever the closing thread did before.
    private let closing = Atomic<Bool>(false)

    /// Refuses appends from now on (graceful close or half-close was requested); the chain drains as usual.
    func refuseNewAppends() { closing.store(true, ordering: .releasing) }

    init(highWatermark: Int = Int.max, hardCap: Int? = nil) {
        self.highWatermark = highWatermark
        self.hardCap = hardCap
    }

    /// True once after an append crossed the high watermark (consumer only).
    func takeCrossedHigh() -> Bool {
        crossedHigh.load(ordering: .relaxed) && crossedHigh.exchange(false, ordering: .relaxed)
    }

    deinit {
        // A chain is failed or drained before its connection goes away; this is the last line of defence.
        _ = failAll(.connectionClosed)
    }

    var pending: Int { pendingBytes.load(ordering: .relaxed) }

    // MARK: producers (any thread)

    enum AppendOutcome: Equatable {
        /// The chain went from idle to non-empty: the caller must schedule a flush on the owning loop.
        case becameNonEmpty
        /// Queued behind other work; the loop already has it in hand.
        case queued
        /// Not queued; every slice of the message was released with this error.
        case refused(ReactorError)
    }

    /// Appends one slice: its node is published directly, without an `OutboundMessage` around it.
    func append(_ slice: consuming Slice) -> AppendOutcome {
        let bytes = slice.bytes.count
        guard bytes > 0 else {  // zero-length slices would never drain (as in OutboundMessage)
            slice.releaseEmpty()
            return .queued
        }
        let node = NodePool.take(slice, from: NodePool.currentUnmanaged)
        return publish(newest: node, oldest: node, bytes: bytes)
    }

    /// Appends the whole message in one atomic step and leaves it empty.
    func append(_ message: inout OutboundMessage) -> AppendOutcome {
        let bytes = message.byteCount
        guard let (newest, oldest) = message.detach() else { return .queued }
        return publish(newest: newest, oldest: oldest, bytes: bytes)
    }

    /// Publishes a private list (newest → oldest) of `bytes` bytes, or releases it if the chain refuses it.
    private func publish(newest: NodePointer, oldest: NodePointer, bytes: Int) -> AppendOutcome {
        if closing.load(ordering: .acquiring) {
            Self.releaseList(newest, error: .connectionClosed)
            return .refused(.connectionClosed)
        }
        let total = pendingBytes.wrappingAdd(bytes, ordering: .relaxed).newValue
        if let cap = hardCap, total > cap {
            pendingBytes.wrappingSubtract(bytes, ordering: .relaxed)
            let error = ReactorError.writeBufferFull(pending: total - bytes, cap: cap)
            Self.releaseList(newest, error: error)
            return .refused(error)
        }
        if total >= highWatermark && total - bytes < highWatermark { crossedHigh.store(true, ordering: .relaxed) }
        var old = head.load(ordering: .relaxed)
        while true {
            if old == Self.sealedMarker {
                pendingBytes.wrappingSubtract(bytes, ordering: .relaxed)
                Self.releaseList(newest, error: .connectionClosed)
                return .refused(.connectionClosed)
            }
            oldest.pointee.next = old > Self.sealedMarker ? NodePointer(bitPattern: old) : nil
            // Release on success publishes the nodes' fields to the consumer's acquiring exchange. Acquire on success
            // pairs with the consumer's releasing go-idle: a producer that takes the chain from idle and schedules the
            // connection sees everything the loop did to it before going idle (its ready-stack link included).
            // Relaxed on failure: we only retry with the value we saw. (On x86 every CAS is a full barrier anyway.)
            let (done, seen) = head.compareExchange(
                expected: old, desired: UInt(bitPattern: newest), successOrdering: .acquiringAndReleasing,
                failureOrdering: .relaxed)
            if done { return old == Self.idle ? .becameNonEmpty : .queued }
            old = seen
        }
    }

    // MARK: consumer (owning loop only)

    /// Moves published nodes into the private FIFO queue. Leaves the head `active`.
    private func collect() {
        // Acquire pairs with the producers' releasing compare-exchange: the nodes' fields are visible.
        let raw = head.exchange(Self.active, ordering: .acquiring)
        guard raw > Self.sealedMarker else { return }
        // Reverse the LIFO list: messages come out in append order, each one's slices in order.
        let last = NodePointer(bitPattern: raw)
        let reversed = Self.reversed(last)
        if let tail = queueTail { tail.pointee.next = reversed } else { queueHead = reversed }
        queueTail = last
    }

    /// Writes as much as the kernel takes, up to `budget` syscalls. `syscall` gets the iovecs of one call.
    func flush(
        iov: IOVecArray, budget: Int, verify: Bool, stats: inout FlushStats,
        syscall: (UnsafeMutableBufferPointer<iovec>) throws(SystemError) -> IOResult<Int>
    ) -> FlushOutcome {
        precondition(!isSealed, "flush of a sealed chain")
        var attempts = 0
        while true {
            collect()
            guard let first = queueHead else {
                // Nothing left: go idle unless a producer published meanwhile. Releasing: the next producer that sees
                // `idle` schedules this connection and must see the loop's last writes to it (see `append`). A failed
                // exchange is followed by the acquiring collect().
                let (wentIdle, _) = head.compareExchange(
                    expected: Self.active, desired: Self.idle, successOrdering: .releasing, failureOrdering: .relaxed)
                if wentIdle { return .drained }
                continue
            }
            if attempts >= budget { return .budgetExhausted }
            // One iovec per run of slices that lie end to end in memory (slices cut in order from one buffer, a
            // header and its body): the kernel walks one segment where it would walk many. At most
            // IOVecArray.sliceLimit (1024) slices a call either way.
            // Each slice is still accounted and released on its own (consume walks nodes, not iovecs).
            var count = 0
            var bytes = 0
            var slices = 0
            var node: NodePointer? = first
            while let n = node, slices < IOVecArray.sliceLimit, bytes < IOVecArray.byteLimit {
                let len = min(n.pointee.count - n.pointee.offset, IOVecArray.byteLimit - bytes)
                let start = n.pointee.base + n.pointee.offset
                if verify {
                    let user = n.pointee.userBase
                    if start >= user && start + len <= user + n.pointee.userCount {
                        stats.verifiedIovecs += 1
                    } else {
                        stats.foreignIovecs += 1
                    }
                }
                if count > 0, let previous = iov.entries[count - 1].iov_base,
                   UnsafeRawPointer(previous) + iov.entries[count - 1].iov_len == start {
                    iov.entries[count - 1].iov_len += len
                    stats.coalescedSlices += 1
                } else {
                    guard count < iov.entries.count else { break }
                    iov.entries[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: start), iov_len: len)
                    count += 1
                }
                slices += 1
                bytes += len
                node = n.pointee.next
            }
            let result: IOResult<Int>
            do {
                result = try syscall(UnsafeMutableBufferPointer(rebasing: iov.entries[0..<count]))
            } catch {
                return .failed(error)
            }
            if count == 1 { stats.sendCalls += 1 } else { stats.sendmsgCalls += 1 }
            switch result {
            case .wouldBlock:
                stats.wouldBlocks += 1
                return .wouldBlock
            case .processed(let written):
                precondition(written >= 0 && written <= bytes, "kernel reported \(written) of \(bytes) bytes")
                consume(written, stats: &stats)
                if written < bytes {
                    // A short write means the send buffer is full: the next call would almost always be EAGAIN,
                    // so wait for EPOLLOUT instead of spending a syscall to learn it (nginx does the same).
                    stats.partialWrites += 1
                    return .wouldBlock
                }
            }
            attempts += 1
        }
    }

    /// Accounts `written` bytes: completes whole slices in order, advances the offset of a partial one.
    private func consume(_ written: Int, stats: inout FlushStats) {
        var left = written
        pendingBytes.wrappingSubtract(written, ordering: .relaxed)
        stats.bytesWritten += written
        let localSlot = zcr_thread_slot()
        while left > 0, let n = queueHead {
            let remaining = n.pointee.count - n.pointee.offset
            if left < remaining {
                n.pointee.offset += left
                return
            }
            left -= remaining
            queueHead = n.pointee.next
            if queueHead == nil { queueTail = nil }
            stats.slicesWritten += 1
            Self.finish(n, written: true, error: nil, localSlot: localSlot)
        }
    }

    /// Seals an idle, empty chain (graceful close): later appends are refused. False if bytes arrived meanwhile.
    func sealIfIdle() -> Bool {
        if isSealed { return true }
        guard queueHead == nil else { return false }
        // Acquiring-and-releasing is not needed: sealing publishes nothing; relaxed suffices for the decision.
        let (sealed, _) = head.compareExchange(expected: Self.idle, desired: Self.sealedMarker, ordering: .relaxed)
        if sealed { isSealed = true }
        return sealed
    }

    /// Seals the chain and releases everything queued or published with `error`. Returns how many slices.
    @discardableResult
    func failAll(_ error: ReactorError) -> Int {
        if !isSealed {
            // Acquire: we read the fields of nodes producers published.
            let raw = head.exchange(Self.sealedMarker, ordering: .acquiring)
            isSealed = true
            if raw > Self.sealedMarker {
                // Published nodes are newest-first; release them oldest-first, after the private queue.
                let reversed = Self.reversed(NodePointer(bitPattern: raw))
                if let tail = queueTail { tail.pointee.next = reversed } else { queueHead = reversed }
            }
        }
        var released = 0
        while let n = queueHead {
            queueHead = n.pointee.next
            pendingBytes.wrappingSubtract(n.pointee.count - n.pointee.offset, ordering: .relaxed)
            Self.finish(n, written: false, error: error)
            released += 1
        }
        queueTail = nil
        return released
    }

    var hasQueuedBytes: Bool { queueHead != nil || pending > 0 }

    /// A newest-first list of nodes, reversed in place: its new head (the oldest).
    @inline(__always)
    static func reversed(_ newest: NodePointer?) -> NodePointer? {
        reverseIntrusiveList(newest, next: { $0.pointee.next }, setNext: { $0.pointee.next = $1 })
    }

    // MARK: release

    /// The one place a slice is released: drops the keepalive, recycles the node, then tells the observer.
    static func finish(_ node: NodePointer, written: Bool, error: ReactorError?,
                       localSlot: UnsafeMutableRawPointer? = zcr_thread_slot()) {
        guard let observer = node.pointee.observer else {
            NodePool.recycle(node, localSlot: localSlot)
            return
        }
        let tag = node.pointee.tag
        if written { observer.sliceWritten(tag: tag, byteCount: node.pointee.count) }
        NodePool.recycle(node, localSlot: localSlot)
        observer.sliceReleased(tag: tag, error: error)
    }

    /// Releases a private list (newest → oldest) with `error`, oldest first.
    static func releaseList(_ newest: NodePointer?, error: ReactorError) {
        var reversed = Self.reversed(newest)
        while let n = reversed {
            reversed = n.pointee.next
            finish(n, written: false, error: error)
        }
    }
}

/// The one reversal of an intrusive singly linked list (in place; returns the new head). Lock-free stacks are pushed
/// newest first; the write chain and the loop's ready stack both serve them oldest first.
@inline(__always)
func reverseIntrusiveList<Link>(_ head: Link?, next: (Link) -> Link?, setNext: (Link, Link?) -> Void) -> Link? {
    var node = head
    var reversed: Link? = nil
    while let n = node {
        node = next(n)
        setNext(n, reversed)
        reversed = n
    }
    return reversed
}
