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
    /// The syscall failed, or a file region's file ended early; the caller fails the chain with this error.
    case failed(ReactorError)
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
    /// sendfile calls made for file regions, and the bytes they sent.
    public var sendfileCalls = 0
    public var sendfileBytes = 0
    /// sendmsg/send calls made with MSG_ZEROCOPY, and the bytes they sent.
    public var zeroCopySends = 0
    public var zeroCopyBytes = 0
    /// MSG_ZEROCOPY calls whose completion arrived, and how many of those the kernel reported it copied anyway
    /// (SO_EE_CODE_ZEROCOPY_COPIED: on loopback and veth, every one).
    public var zeroCopyCompletions = 0
    public var zeroCopyCopied = 0
    /// Sends that asked for zero copy, got ENOBUFS, and were made again at once without it.
    public var zeroCopyFallbacks = 0
    /// Bytes a copy control (`ReactorConfiguration.copyControl`) copied into a staging buffer before sending.
    public var stagedBytes = 0
    public init() {}

    public var syscalls: Int { sendCalls + sendmsgCalls + sendfileCalls }

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
        d.sendfileCalls = a.sendfileCalls - b.sendfileCalls
        d.sendfileBytes = a.sendfileBytes - b.sendfileBytes
        d.zeroCopySends = a.zeroCopySends - b.zeroCopySends
        d.zeroCopyBytes = a.zeroCopyBytes - b.zeroCopyBytes
        d.zeroCopyCompletions = a.zeroCopyCompletions - b.zeroCopyCompletions
        d.zeroCopyCopied = a.zeroCopyCopied - b.zeroCopyCopied
        d.zeroCopyFallbacks = a.zeroCopyFallbacks - b.zeroCopyFallbacks
        d.stagedBytes = a.stagedBytes - b.stagedBytes
        return d
    }

    /// Adds `b` to `a`.
    public static func += (a: inout FlushStats, b: FlushStats) {
        var b = b
        addCommon(&b, into: &a)
        if b.movedRarer { a.addRarer(b) }
    }

    /// Adds a flush to two totals at once (a connection's and its loop's). Everything is passed in place, and the
    /// counters most flushes leave at zero are added only when one of them moved: copying the 136-byte struct for
    /// each total (a memcpy, even with `borrowing`) and adding 17 fields twice was 180 of a ping-pong request's
    /// 2,000 user-space instructions (callgrind).
    @inline(__always)
    static func add(_ d: inout FlushStats, to a: inout FlushStats, and b: inout FlushStats) {
        addCommon(&d, into: &a)
        addCommon(&d, into: &b)
        if d.movedRarer {
            a.addRarer(d)
            b.addRarer(d)
        }
    }

    /// The four counters every flush moves.
    @inline(__always)
    private static func addCommon(_ d: inout FlushStats, into a: inout FlushStats) {
        a.sendCalls += d.sendCalls
        a.sendmsgCalls += d.sendmsgCalls
        a.slicesWritten += d.slicesWritten
        a.bytesWritten += d.bytesWritten
    }

    /// Whether any counter beyond the first four is not zero.
    private var movedRarer: Bool {
        partialWrites | wouldBlocks | verifiedIovecs | foreignIovecs | coalescedSlices | sendfileCalls | sendfileBytes
            | zeroCopySends | zeroCopyBytes | zeroCopyCompletions | zeroCopyCopied | zeroCopyFallbacks | stagedBytes != 0
    }

    @inline(never)
    private mutating func addRarer(_ b: borrowing FlushStats) {
        partialWrites += b.partialWrites
        wouldBlocks += b.wouldBlocks
        verifiedIovecs += b.verifiedIovecs
        foreignIovecs += b.foreignIovecs
        coalescedSlices += b.coalescedSlices
        sendfileCalls += b.sendfileCalls
        sendfileBytes += b.sendfileBytes
        zeroCopySends += b.zeroCopySends
        zeroCopyBytes += b.zeroCopyBytes
        zeroCopyCompletions += b.zeroCopyCompletions
        zeroCopyCopied += b.zeroCopyCopied
        zeroCopyFallbacks += b.zeroCopyFallbacks
        stagedBytes += b.stagedBytes
    }
}

/// The syscalls a flush makes: the connection's go to its socket, tests script them. Generic, so the loop's calls
/// are specialized and capture nothing on the heap.
protocol FlushIO {
    /// sendmsg of the iovecs (send for one), with MSG_ZEROCOPY when `zeroCopy`.
    func send(_ iov: UnsafeMutableBufferPointer<iovec>, zeroCopy: Bool) throws(SystemError) -> IOResult<Int>
    /// sendfile of at most `count` bytes of `fd` from `offset` (the file position is not used).
    func sendFile(_ fd: Int32, offset: Int64, count: Int) throws(SystemError) -> IOResult<Int>
}

extension FlushIO {
    func sendFile(_ fd: Int32, offset: Int64, count: Int) throws(SystemError) -> IOResult<Int> {
        preconditionFailure("this FlushIO sends no files")
    }
}

/// How a flush builds its calls.
struct FlushOptions {
    /// Check every iovec handed to the kernel against the memory of the slices it sends.
    var verify = false
    /// Copy the bytes into a staging buffer first (to prove the profiler's checks catch copies).
    var copyControl: CopyControl? = nil
    /// Send calls carrying at least this many bytes ask for MSG_ZEROCOPY (nil: never).
    var zeroCopyThreshold: Int? = nil
}

/// A deliberate copy before every send, for showing from outside that `zcr profile`'s checks catch copies.
/// Never for production: it is the regression the profiler exists to find.
public enum CopyControl: String, Sendable, CaseIterable {
    /// Each send's bytes are copied into a newly allocated buffer (caught by the allocation check too).
    case allocate
    /// Each send's bytes are copied into one staging buffer per connection, allocated once (allocation stays near
    /// zero: only the iovec and memcpy checks catch it).
    case reuse
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
        let count = slice.count
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

    // Declaration order is layout order: everything a request touches (the head, the counter, the flags, the
    // limits, the private queue's head and the held reply) comes first, in this object's first two cache lines.
    // With 1,000 connections each request finds them out of cache, and the misses cost more than the
    // instructions (cachegrind: 4 of a ping-pong request's 10 first-level misses were this object's before).
    private let head = Atomic<UInt>(WriteChain.idle)
    /// Bytes appended and not yet accepted by the kernel. Producers add when they append, before publishing;
    /// the consumer subtracts after the syscall returns. Relaxed ordering: the counter guards no memory, it
    /// only feeds backpressure decisions, and each RMW is atomic, so the sum is exact.
    private let pendingBytes = Atomic<Int>(0)
    /// Set when a close was requested: later appends are refused, while what was appended before still goes out.
    /// Release/acquire: a close followed by a write on the same thread must see it (program order suffices there);
    /// across threads it orders the refusal after whatever the closing thread did before.
    private let closing = Atomic<Bool>(false)
    /// Set by producers (relaxed: a hint the loop reads after its acquiring collect of the same append).
    private let crossedHigh = Atomic<Bool>(false)

    // Consumer-only state (the owning loop thread).
    private(set) var isSealed = false
    /// Whether sends may still ask for MSG_ZEROCOPY: set by the connection once SO_ZEROCOPY is on, cleared for good
    /// by the first completion the kernel copied, or by ENOBUFS.
    var zeroCopyEnabled = false
    /// The largest reply `holdFront` takes: below the high watermark and within the hard cap.
    private let frontLimit: Int
    private var queueHead: NodePointer?
    /// The owning loop's own reply, held out of the shared list (`holdFront`): it goes before everything queued.
    /// Its parts, not a Slice: a Slice's keepalive enum is destroyed through its value witnesses (about 80
    /// instructions), an owner reference by one release. `frontCount` 0: none held.
    private var frontBase: UnsafeRawPointer?
    private var frontCount = 0
    /// One strong reference, counted by hand: taken when the reply is held (or handed over already taken),
    /// given back by `clearFront` or handed to the node's keepalive by `moveFrontToQueue`, exactly once. A plain
    /// `AnyObject?` cost an extra retain and two releases a request (the old nil's and the argument's).
    private var frontOwner: Unmanaged<AnyObject>?
    private var frontObserver: (any SliceObserver)?
    private var frontTag: UInt64 = 0
    /// Set instead of `frontOwner` when the front is bytes the loop just read, lent rather than taken (`lendFront`):
    /// neither retained nor charged until `ownLentFront` makes them so. Nil otherwise.
    private var frontLent: InboundBytes?
    private var queueTail: NodePointer?
    /// Written slices waiting for their MSG_ZEROCOPY completion, in append order (released in that order).
    private var awaitingHead: NodePointer?
    private var awaitingTail: NodePointer?

    /// Appends are refused with `.writeBufferFull` past this many pending bytes (nil: no cap).
    let hardCap: Int?
    /// An append that takes the pending bytes from below this to at or above it sets `crossedHigh`, so the loop
    /// reports unwritability even if it drains everything before it looks at the counter.
    let highWatermark: Int
    /// The copy control's staging buffer (`CopyControl.reuse`), allocated once (consumer only).
    private var staging: UnsafeMutableRawBufferPointer?

    /// Refuses appends from now on (graceful close or half-close was requested); the chain drains as usual.
    func refuseNewAppends() { closing.store(true, ordering: .releasing) }

    init(highWatermark: Int = Int.max, hardCap: Int? = nil) {
        self.highWatermark = highWatermark
        self.hardCap = hardCap
        frontLimit = min(highWatermark - 1, hardCap ?? Int.max)
    }

    /// True once after an append crossed the high watermark (consumer only).
    /// Whether an append crossed the high watermark since the last `takeCrossedHigh` (consumer only; does not clear).
    var crossedHighSet: Bool { crossedHigh.load(ordering: .relaxed) }

    func takeCrossedHigh() -> Bool {
        crossedHigh.load(ordering: .relaxed) && crossedHigh.exchange(false, ordering: .relaxed)
    }

    deinit {
        // A chain is failed or drained before its connection goes away; this is the last line of defence.
        _ = failAll(.connectionClosed)
        releaseAwaiting()
        staging?.deallocate()
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
        let bytes = slice.count
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

    // MARK: the owning loop's own reply (consumer only)
    //
    // A reply a handler writes while its connection's events are dispatched, to an idle chain, is the usual shape
    // (a request read, its answer written, both on the loop). The lock-free list would cost it a node, a publish
    // (an add and a compare-exchange), a collect (an exchange), the walk that accounts it (a subtract) and the
    // go-idle (a compare-exchange): five locked instructions and about 500 others, for a slice the loop sends
    // itself a moment later. Held here instead, it is sent by the flush at the end of the dispatch with one send.
    // Invariants:
    // - `front` is set only by the owning loop, only while the chain is idle and its private queue empty, so
    //   nothing the loop appended before it can be behind it;
    // - it is always the oldest slice: the flush sends it before collecting, a second append by the loop
    //   (`spillFront`) first moves it to the head of the private queue, and failAll releases it first;
    // - its bytes are not in `pendingBytes` until it moves to the queue; while held, the owning loop counts them
    //   itself (`frontBytes`). It is smaller than the high watermark and the hard cap, so it cannot cross either;
    // - it is released exactly once: sent whole (written, then released), moved to the queue (whose node then
    //   owns it), or failed.
    // A lent front (`lendFront`) is read bytes held without a reference to their buffer and without a charge:
    // - the loop reads into that buffer again only in the same connection's `readAvailable`, which calls
    //   `ownLentFront` before its next read; every other way out of the dispatch owns it first too: the move to
    //   the queue (a partial send, EAGAIN, a second write, failAll) takes the reference and the charge, and a send
    //   of all of it needs neither;
    // - so the bytes are never overwritten while held, and the buffer's own invariant (reused in place only when
    //   nobody else holds it) is kept: the reuse waits behind `used`, which the charge moves past them.

    /// Bytes of the held reply (0: none). Consumer only.
    var frontBytes: Int { frontCount }

    /// Whether the owning loop may hold a reply of `count` bytes of memory as the front: smaller than the high
    /// watermark and the hard cap, no MSG_ZEROCOPY wanted for it, the chain open, idle and empty. Consumer only.
    /// The relaxed load of the head may miss a producer's publish that is concurrent with this write (then either
    /// order is right); one that happened before it is seen (coherence on one location).
    @inline(__always)
    func canHoldFront(count: Int, zeroCopyThreshold: Int?) -> Bool {
        frontCount == 0 && queueHead == nil && !isSealed && count > 0 && count <= frontLimit
            && !(zeroCopyEnabled && count >= (zeroCopyThreshold ?? Int.max))
            && head.load(ordering: .relaxed) == Self.idle && !closing.load(ordering: .acquiring)
    }

    /// Holds a reply (after `canHoldFront` said yes): its bytes, one strong reference to the object that keeps
    /// them alive, which the chain now owns (nil: memory the caller promised outlives the write), its observer and
    /// tag. Consumer only.
    @inline(__always)
    func holdFront(
        _ bytes: UnsafeRawBufferPointer, retainedOwner owner: Unmanaged<AnyObject>?, observer: (any SliceObserver)?,
        tag: UInt64
    ) {
        frontBase = bytes.baseAddress
        frontCount = bytes.count
        frontOwner = owner
        // The front's observer is nil while none is held: assigning nil over it would still call a release.
        if observer != nil { frontObserver = observer }
        frontTag = tag
    }

    /// Holds read bytes as the front (after `canHoldFront` said yes) without retaining their buffer or charging
    /// them: lent until the front is sent whole, or owned by `ownLentFront` (see the invariants above). Consumer
    /// only; for the bytes of the read the owning loop is dispatching now.
    @inline(__always)
    func lendFront(_ bytes: InboundBytes) {
        frontBase = bytes.bytes.baseAddress
        frontCount = bytes.count
        frontLent = bytes
        frontTag = 0
    }

    /// A lent front becomes owned: its buffer retained and its bytes charged to the connection that read them,
    /// as `InboundBytes.retainedSlice()` does. Before the loop reads into that buffer again. Consumer only.
    @inline(__always)
    func ownLentFront() {
        if frontLent != nil { takeLentFront() }
    }

    @inline(never)
    private func takeLentFront() {
        frontOwner = frontLent.unsafelyUnwrapped.retainedOwner()
        frontLent = nil
    }

    /// A slice's reply, if it is memory with an owner object or none (the usual ones: read bytes, an owned
    /// buffer, unowned memory); false leaves the slice to the list. Consumer only.
    @inline(__always)
    func holdFront(_ slice: borrowing Slice, zeroCopyThreshold: Int?) -> Bool {
        guard canHoldFront(count: slice.bytes.count, zeroCopyThreshold: zeroCopyThreshold) else { return false }
        let owner: Unmanaged<AnyObject>?
        switch slice.keepalive {
        case .object(let o): owner = Unmanaged.passRetained(o)
        case .none: owner = nil
        default: return false
        }
        holdFront(slice.bytes, retainedOwner: owner, observer: slice.observer, tag: slice.tag)
        return true
    }

    /// Moves the held reply, less the `sent` bytes already written, to the head of the private queue, where the
    /// list's flush sends the rest and accounts it. Marks the head active (unless a producer published meanwhile,
    /// which does the same), so producers keep to "the loop will look again". Consumer only.
    @inline(__always)
    func spillFront(sent: Int = 0) {
        if frontCount > 0 { moveFrontToQueue(sent: sent) }
    }

    @inline(never)
    private func moveFrontToQueue(sent: Int) {
        ownLentFront()
        var slice = Slice(bytes: UnsafeRawBufferPointer(start: frontBase, count: frontCount),
                          keepalive: frontOwner.map { .object($0.takeRetainedValue()) } ?? .none)
        slice.observer = frontObserver
        slice.tag = frontTag
        let count = frontCount
        frontOwner = nil  // its reference went to the keepalive
        clearFront()
        let node = NodePool.take(slice, from: NodePool.currentUnmanaged)
        node.pointee.offset = sent
        pendingBytes.wrappingAdd(count - sent, ordering: .relaxed)
        node.pointee.next = queueHead
        queueHead = node
        if queueTail == nil { queueTail = node }
        // Relaxed: nothing is published by it (the node is private), and a failure means the head holds a
        // producer's list, which is active as far as producers are concerned.
        _ = head.compareExchange(expected: Self.idle, desired: Self.active, ordering: .relaxed)
    }

    /// Empties the front; dropping the owner reference is the release of the bytes.
    @inline(__always)
    private func clearFront() {
        frontBase = nil
        frontCount = 0
        frontLent = nil  // lent: nothing was taken, so nothing is given back
        if let owner = frontOwner {
            frontOwner = nil
            owner.release()
        }
        if frontObserver != nil { frontObserver = nil }
    }

    /// One send of the held reply. nil: all of it went (the flush goes on only if something else is queued or
    /// published); otherwise the flush ends with what the outcome says.
    private func sendFront<IO: FlushIO>(verify: Bool, stats: inout FlushStats, io: IO) -> FlushOutcome? {
        let count = frontCount
        // The iovec is the slice's own memory: only an owner object or none is ever held, never a copying path's.
        if verify { stats.verifiedIovecs += 1 }
        var one = iovec(iov_base: UnsafeMutableRawPointer(mutating: frontBase), iov_len: count)
        let result: IOResult<Int>
        do {
            result = try withUnsafeMutablePointer(to: &one) { (v) throws(SystemError) -> IOResult<Int> in
                try io.send(UnsafeMutableBufferPointer(start: v, count: 1), zeroCopy: false)
            }
        } catch {
            return .failed(.system(error))  // the connection fails the chain, which releases the front with it
        }
        stats.sendCalls += 1
        switch result {
        case .wouldBlock:
            stats.wouldBlocks += 1
            spillFront()
            return .wouldBlock
        case .processed(let written):
            precondition(written >= 0 && written <= count, "kernel reported \(written) of \(count) bytes")
            stats.bytesWritten += written
            if written < count {
                stats.partialWrites += 1
                spillFront(sent: written)
                return .wouldBlock
            }
            stats.slicesWritten += 1
            if let observer = frontObserver {
                // As `finish` does: written, then the release of the bytes, then released. The front is emptied
                // before the observer hears anything: a callback that writes to this connection must find it empty
                // (a held reply it moved to the list would go out twice), so the owner is given back in between.
                let tag = frontTag
                let owner = frontOwner
                frontOwner = nil
                clearFront()
                observer.sliceWritten(tag: tag, byteCount: count)
                owner?.release()
                observer.sliceReleased(tag: tag, error: nil)
            } else {
                clearFront()
            }
            return nil
        }
    }

    /// A flush that starts with the held reply (consumer only; `frontBytes > 0`): its one send, and, only if
    /// something else was queued or published meanwhile, `rest` (the general flush, which the caller passes so that
    /// its code is not laid out inside this short function).
    func flushFront<IO: FlushIO>(
        verify: Bool, stats: inout FlushStats, io: IO, rest: (WriteChain, inout FlushStats) -> FlushOutcome
    ) -> FlushOutcome {
        precondition(!isSealed, "flush of a sealed chain")
        if let step = sendFront(verify: verify, stats: &stats, io: io) { return step }
        if queueHead == nil && head.load(ordering: .relaxed) == Self.idle { return .drained }
        return rest(self, &stats)
    }

    // MARK: consumer (owning loop only)

    /// Moves published nodes into the private FIFO queue. Leaves the head `active`.
    private func collect() {
        // Nothing published since the last collect: the head is still `active`, and a plain load says so without
        // the locked exchange (one fewer per flush). Relaxed is enough: a load that sees `active` takes nothing,
        // and a publish it missed is seen by the compare-exchange that would take the chain idle, which then fails.
        if head.load(ordering: .relaxed) == Self.active { return }
        // Acquire pairs with the producers' releasing compare-exchange: the nodes' fields are visible.
        let raw = head.exchange(Self.active, ordering: .acquiring)
        guard raw > Self.sealedMarker else { return }
        // Reverse the LIFO list: messages come out in append order, each one's slices in order.
        let last = NodePointer(bitPattern: raw)
        let reversed = Self.reversed(last)
        if let tail = queueTail { tail.pointee.next = reversed } else { queueHead = reversed }
        queueTail = last
    }

    /// Writes as much as the kernel takes, up to `budget` syscalls: runs of memory slices with one sendmsg each,
    /// file regions with sendfile, in append order.
    func flush<IO: FlushIO>(
        iov: IOVecArray, budget: Int, options: FlushOptions = FlushOptions(), stats: inout FlushStats, io: IO
    ) -> FlushOutcome {
        precondition(!isSealed, "flush of a sealed chain")
        var attempts = 0
        if frontCount > 0 {
            attempts = 1
            if let step = sendFront(verify: options.verify, stats: &stats, io: io) { return step }
            // The usual end: the reply went, and nobody published meanwhile (the head is as the loop left it).
            if queueHead == nil && head.load(ordering: .relaxed) == Self.idle { return .drained }
        }
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
            attempts += 1
            let step = first.pointee.isFile
                ? sendFileRegion(first, stats: &stats, io: io)
                : sendMemory(first, iov: iov, options: options, stats: &stats, io: io)
            if let step { return step }
        }
    }

    /// One sendfile for the region at the head. nil: all of it went, go on.
    private func sendFileRegion<IO: FlushIO>(_ node: NodePointer, stats: inout FlushStats, io: IO) -> FlushOutcome? {
        let region = node.pointee.slice.fileRegion!
        let want = min(node.pointee.count - node.pointee.offset, Self.sendfileLimit)
        let result: IOResult<Int>
        do {
            result = try io.sendFile(region.file.descriptor, offset: region.offset + Int64(node.pointee.offset), count: want)
        } catch {
            return .failed(.system(error))
        }
        stats.sendfileCalls += 1
        switch result {
        case .wouldBlock:
            stats.wouldBlocks += 1
            return .wouldBlock
        case .processed(0):
            // sendfile returns 0 only at the end of the file: it is shorter than the region now.
            let sent = Int(region.offset) + node.pointee.offset
            return .failed(.fileTruncated(path: region.file.path, offset: sent, expected: Int(region.offset) + region.count))
        case .processed(let written):
            precondition(written > 0 && written <= want, "sendfile reported \(written) of \(want) bytes")
            stats.sendfileBytes += written
            return sent(written, of: want, zeroCopyCall: nil, stats: &stats)
        }
    }

    /// Accounts a call that took `written` of `asked` bytes. nil when all of it went; a short write means the send
    /// buffer is full, and the next call would almost always be EAGAIN, so wait for EPOLLOUT instead of spending a
    /// syscall to learn it (nginx does the same).
    private func sent(_ written: Int, of asked: Int, zeroCopyCall: UInt32?, stats: inout FlushStats) -> FlushOutcome? {
        consume(written, zeroCopyCall: zeroCopyCall, stats: &stats)
        guard written < asked else { return nil }
        stats.partialWrites += 1
        return .wouldBlock
    }

    /// One sendmsg for the run of memory slices at the head (up to the next file region). nil: all of it went.
    private func sendMemory<IO: FlushIO>(
        _ first: NodePointer, iov: IOVecArray, options: FlushOptions, stats: inout FlushStats, io: IO
    ) -> FlushOutcome? {
        // One iovec per run of slices that lie end to end in memory (slices cut in order from one buffer, a
        // header and its body): the kernel walks one segment where it would walk many. At most
        // IOVecArray.sliceLimit (1024) slices a call either way.
        // Each slice is still accounted and released on its own (consume walks nodes, not iovecs).
        var count = 0
        var bytes = 0
        var slices = 0
        var node: NodePointer? = first
        while let n = node, !n.pointee.isFile, slices < IOVecArray.sliceLimit, bytes < IOVecArray.byteLimit {
            let len = min(n.pointee.count - n.pointee.offset, IOVecArray.byteLimit - bytes)
            let start = n.pointee.base + n.pointee.offset
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
        var call = UnsafeMutableBufferPointer(rebasing: iov.entries[0..<count])
        var staged: UnsafeMutableRawBufferPointer? = nil
        if let control = options.copyControl {
            staged = stage(call, bytes: bytes, control: control)
            iov.entries[0] = iovec(iov_base: staged!.baseAddress, iov_len: bytes)
            call = UnsafeMutableBufferPointer(rebasing: iov.entries[0..<1])
            stats.stagedBytes += bytes
        }
        defer { if options.copyControl == .allocate, let staged { staged.deallocate() } }
        // The proof at the syscall boundary: what the kernel is handed must be the appended memory itself.
        if options.verify { verifyIovecs(call, from: first, stats: &stats) }
        let zeroCopy = zeroCopyEnabled && bytes >= (options.zeroCopyThreshold ?? Int.max)
        var result: IOResult<Int>
        do {
            result = try io.send(call, zeroCopy: zeroCopy)
        } catch where zeroCopy && error.errno == ENOBUFS {
            // Pending notifications are charged to optmem_max (and pages to RLIMIT_MEMLOCK): stop asking, and send
            // the same bytes now without the flag, so the writer never waits for completions that may not come.
            stats.zeroCopyFallbacks += 1
            zeroCopyEnabled = false
            do { result = try io.send(call, zeroCopy: false) } catch { return .failed(.system(error)) }
        } catch {
            return .failed(.system(error))
        }
        if call.count == 1 { stats.sendCalls += 1 } else { stats.sendmsgCalls += 1 }
        switch result {
        case .wouldBlock:
            stats.wouldBlocks += 1
            return .wouldBlock
        case .processed(let written):
            precondition(written >= 0 && written <= bytes, "kernel reported \(written) of \(bytes) bytes")
            var zeroCopyCall: UInt32? = nil
            if zeroCopy && zeroCopyEnabled {
                // The kernel numbers every successful MSG_ZEROCOPY call on the socket, from 0, as a wrapping u32.
                zeroCopyCall = nextZeroCopyCall
                nextZeroCopyCall &+= 1
                stats.zeroCopySends += 1
                stats.zeroCopyBytes += written
            }
            return sent(written, of: bytes, zeroCopyCall: zeroCopyCall, stats: &stats)
        }
    }

    /// sendfile takes at most this many bytes a call on Linux (0x7ffff000).
    static let sendfileLimit = 0x7fff_f000

    /// Copies the call's bytes into a staging buffer (copy controls only): a new one, or this chain's own one.
    private func stage(_ call: UnsafeMutableBufferPointer<iovec>, bytes: Int, control: CopyControl) -> UnsafeMutableRawBufferPointer {
        let buffer: UnsafeMutableRawBufferPointer
        switch control {
        case .allocate:
            buffer = .allocate(byteCount: max(bytes, 1), alignment: 16)
        case .reuse:
            if let s = staging, s.count >= bytes {
                buffer = s
            } else {
                staging?.deallocate()
                buffer = .allocate(byteCount: max(bytes, 256 * 1024), alignment: 16)
                staging = buffer
            }
        }
        var at = 0
        for v in call {
            _ = memcpy(buffer.baseAddress! + at, v.iov_base, v.iov_len)
            at += v.iov_len
        }
        return buffer
    }

    /// Walks the iovecs the kernel is about to get beside the slices they should come from: every entry must start
    /// where the next unsent byte of the appended memory is, and lie inside it (several slices laid end to end count
    /// as one). A staging copy, even into memory allocated once and reused, fails this.
    private func verifyIovecs(_ call: UnsafeMutableBufferPointer<iovec>, from first: NodePointer, stats: inout FlushStats) {
        var node: NodePointer? = first
        var offset = first.pointee.offset
        for v in call {
            var left = v.iov_len
            var expected = UnsafeRawPointer(v.iov_base)
            var ok = true
            while left > 0, let n = node, !n.pointee.isFile {
                let userStart = n.pointee.userBase + offset
                let userLeft = n.pointee.userCount - offset
                if expected != userStart || userLeft <= 0 { ok = false }
                let take = min(left, n.pointee.count - offset)
                left -= take
                expected = expected.map { $0 + take }
                if take == n.pointee.count - offset {
                    node = n.pointee.next
                    offset = 0
                } else {
                    offset += take
                }
            }
            if left > 0 { ok = false }
            if ok { stats.verifiedIovecs += 1 } else { stats.foreignIovecs += 1 }
        }
    }

    /// Accounts `written` bytes: completes whole slices in order, advances the offset of a partial one. Slices a
    /// MSG_ZEROCOPY call carried are "written" now and released when the kernel says it is done with them.
    private func consume(_ written: Int, zeroCopyCall: UInt32?, stats: inout FlushStats) {
        var left = written
        pendingBytes.wrappingSubtract(written, ordering: .relaxed)
        stats.bytesWritten += written
        let localSlot = zcr_thread_slot()
        while left > 0, let n = queueHead {
            if let call = zeroCopyCall {
                n.pointee.zeroCopyTouched = true
                n.pointee.zeroCopyCall = call
            }
            let remaining = n.pointee.count - n.pointee.offset
            if left < remaining {
                n.pointee.offset += left
                return
            }
            left -= remaining
            queueHead = n.pointee.next
            if queueHead == nil { queueTail = nil }
            stats.slicesWritten += 1
            if n.pointee.zeroCopyTouched || awaitingHead != nil {
                awaitCompletion(n)
            } else {
                Self.finish(n, written: true, error: nil, localSlot: localSlot)
            }
        }
    }

    // MARK: MSG_ZEROCOPY completions (owning loop only)

    /// The number the kernel gives the next successful MSG_ZEROCOPY call (per socket, from 0, wrapping).
    private var nextZeroCopyCall: UInt32 = 0
    /// Every call numbered below this (in wrapping order) has completed.
    private var completedBelow: UInt32 = 0
    /// Completed ranges above `completedBelow` (completions may come out of order on retransmission or teardown).
    private var completedAhead: [(low: UInt32, high: UInt32)] = []
    private(set) var awaitingCount = 0

    /// Tests: numbers the next zero-copy call `n` (the kernel starts at 0; wrapping is what this exercises).
    func startZeroCopyNumbering(at n: UInt32) {
        precondition(awaitingHead == nil && completedAhead.isEmpty)
        nextZeroCopyCall = n
        completedBelow = n
    }

    private func awaitCompletion(_ n: NodePointer) {
        if !n.pointee.zeroCopyTouched {
            // Behind a slice that waits: it waits for the same calls, so releases stay in append order.
            n.pointee.zeroCopyTouched = true
            n.pointee.zeroCopyCall = awaitingTail!.pointee.zeroCopyCall
        }
        // Written now: the observer hears it at once; the release waits.
        if let observer = n.pointee.observer { observer.sliceWritten(tag: n.pointee.tag, byteCount: n.pointee.count) }
        n.pointee.next = nil
        if let tail = awaitingTail { tail.pointee.next = n } else { awaitingHead = n }
        awaitingTail = n
        awaitingCount += 1
    }

    /// The kernel completed calls `low...high` (inclusive, wrapping). Releases every waiting slice whose calls are
    /// all complete; returns how many.
    @discardableResult
    func completeZeroCopy(low: UInt32, high: UInt32, copied: Bool, stats: inout FlushStats) -> Int {
        stats.zeroCopyCompletions += Int(high &- low) + 1
        if copied {
            stats.zeroCopyCopied += Int(high &- low) + 1
            zeroCopyEnabled = false
        }
        completedAhead.append((low, high))
        // Fold in every range that starts at or below the mark (wrapping order), as long as one does.
        var folded = true
        while folded {
            folded = false
            for (i, r) in completedAhead.enumerated() where Int32(bitPattern: r.low &- completedBelow) <= 0 {
                if Int32(bitPattern: r.high &+ 1 &- completedBelow) > 0 { completedBelow = r.high &+ 1 }
                completedAhead.remove(at: i)
                folded = true
                break
            }
        }
        var released = 0
        let localSlot = zcr_thread_slot()
        while let n = awaitingHead, Int32(bitPattern: n.pointee.zeroCopyCall &- completedBelow) < 0 {
            awaitingHead = n.pointee.next
            if awaitingHead == nil { awaitingTail = nil }
            awaitingCount -= 1
            released += 1
            Self.finish(n, written: false, error: nil, localSlot: localSlot)
        }
        return released
    }

    /// Releases every slice still waiting for a completion (the connection's completion deadline passed, or the
    /// socket is gone). Returns how many.
    @discardableResult
    func releaseAwaiting() -> Int {
        var released = 0
        while let n = awaitingHead {
            awaitingHead = n.pointee.next
            awaitingCount -= 1
            released += 1
            Self.finish(n, written: false, error: nil)
        }
        awaitingTail = nil
        return released
    }

    /// Seals an idle, empty chain (graceful close): later appends are refused. False if bytes arrived meanwhile.
    func sealIfIdle() -> Bool {
        if isSealed { return true }
        guard frontCount == 0, queueHead == nil else { return false }
        // Acquiring-and-releasing is not needed: sealing publishes nothing; relaxed suffices for the decision.
        let (sealed, _) = head.compareExchange(expected: Self.idle, desired: Self.sealedMarker, ordering: .relaxed)
        if sealed { isSealed = true }
        return sealed
    }

    /// Seals the chain and releases everything queued or published with `error`. Returns how many slices.
    @discardableResult
    func failAll(_ error: ReactorError) -> Int {
        spillFront()  // the oldest slice: released first, like the rest, from the queue
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

    var hasQueuedBytes: Bool { frontCount > 0 || queueHead != nil || pending > 0 }

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
