// Where a loop reads, and the bound on what slices of it may hold.
//
// The loop reads into one buffer at a time, reused read after read. A handler that keeps bytes turns them into a
// Slice (`InboundBytes.retainedSlice()`), which holds the buffer; the loop then reads into the rest of it, and once
// too little is left it moves on ("rotates") to another buffer. A buffer still held by slices is *retired*: the
// pool forgets it (but for a few recent ones it checks again at the next rotation), and when its last slice is
// released, on whatever thread, its deinit gives the memory block back to the loop's `ReadMemory`. The loop takes
// returned blocks back on its next rotation, keeps as many free as slices hold now (at least `freeLimit`, never more
// than the budget's worth), and frees the rest. Keeping the working set's worth matters: with many connections each
// holding a few echoes, blocks come back in bursts and are wanted again at once, and freeing all but 16 of them
// made the allocator see a 64 KiB malloc and free per retired buffer (0.8 bytes allocated per byte echoed at 4 KiB
// messages over 1,000 connections). The surplus is trimmed once slices hold less.
//
// Invariants:
// - a block is owned by exactly one of: the allocator, one ReadBuffer, the returned stack, the loop's free list;
// - a buffer is reused in place only when the pool's reference is the only one (isKnownUniquelyReferenced), so
//   memory held by a slice is never overwritten;
// - `used`, `charges` and the pool are touched by the owning loop only while the buffer is current (or in the
//   recent list); once retired they are read only by the deinit, which runs after the last release (ARC orders
//   the loop's writes before it);
// - every byte a connection retained is charged to it (`Connection.readBytesHeld`) until the buffer holding it is
//   free again. This is what the loop's budget looks at when it picks whose reading to pause.
import Synchronization

/// One charge of retained bytes: `bytes` of this buffer are held by slices `holder` retained.
struct ReadCharge {
    let holder: Connection
    var bytes: Int
}

final class ReadBuffer: @unchecked Sendable {
    let storage: UnsafeMutableRawBufferPointer
    let memory: ReadMemory
    /// Bytes before this offset are held by slices; reads go after it (loop only).
    /// Unchecked exclusivity, for both: loop only, never accessed across a call out (see EventLoop's loop-only state).
    @exclusivity(unchecked) var used = 0
    /// Who retained bytes here (loop only while current; read by deinit).
    @exclusivity(unchecked) var charges: [ReadCharge] = []
    /// True while counted in `ReadMemory.heldBuffers` (retired while slices held it).
    var countedHeld = false

    init(block: UnsafeMutableRawPointer, memory: ReadMemory) {
        storage = UnsafeMutableRawBufferPointer(start: block, count: memory.bufferSize)
        self.memory = memory
        charges.reserveCapacity(64)
    }

    /// `bytes` more bytes at the end of `used` are retained by `holder` (loop only).
    func charge(_ holder: Connection, bytes: Int) {
        holder.readBytesHeld.wrappingAdd(bytes, ordering: .relaxed)
        // Plain index arithmetic: this runs per retained read, and debug builds allocate in generic helpers.
        let last = charges.count - 1
        if last >= 0 && charges[last].holder === holder {
            charges[last].bytes += bytes
        } else {
            charges.append(ReadCharge(holder: holder, bytes: bytes))
        }
    }

    /// Nobody holds the buffer any more: its charges end and reads start from the beginning again (loop only).
    func reset() {
        releaseCharges()
        // Popping keeps the capacity as removeAll(keepingCapacity:) does, without its generic replaceSubrange:
        // about 110 instructions for one charge there, and with replies flushed in their dispatch a buffer starts
        // over about once a request.
        while charges.popLast() != nil {}
        used = 0
    }

    private func releaseCharges() {
        // Relaxed: a statistic that feeds the budget's choice; each subtraction is atomic, so the sums are exact.
        var i = 0
        while i < charges.count {
            charges[i].holder.readBytesHeld.wrappingSubtract(charges[i].bytes, ordering: .relaxed)
            i += 1
        }
    }

    deinit {
        releaseCharges()
        memory.giveBack(storage.baseAddress!, wasHeld: countedHeld)
    }
}

/// A loop's read memory: the blocks, the bound on those held by slices, and the counts. Shared with whichever
/// thread releases the last slice of a retired buffer; the fields marked "loop only" are the owning loop's.
final class ReadMemory: @unchecked Sendable {
    let bufferSize: Int
    /// Bytes of retired buffers that slices may hold before the loop pauses reading from the largest holders.
    let budget: Int
    /// Free blocks kept for reuse; more go back to the allocator.
    let freeLimit: Int
    /// Blocks given back by other threads' (or the loop's own) releases: an intrusive Treiber stack whose link lives
    /// in each block's first word, pushed one at a time and taken whole by the loop (no ABA). Push is releasing (the
    /// link was written before), the take acquiring.
    private let returned = Atomic<UInt>(0)
    /// Retired buffers that slices still hold. Relaxed: a count that only feeds decisions; RMWs keep it exact.
    let heldBuffers = Atomic<Int>(0)
    /// Set by the loop while it has connections paused for read memory: the release that brings the held memory
    /// down to the resume mark clears it and wakes the loop (exchange, so one wake per pause episode).
    let wakeWanted = Atomic<Bool>(false)
    /// The loop to wake (weak: buffers may outlive their loop).
    weak var loop: EventLoop?

    // Loop only.
    private var free: [UnsafeMutableRawPointer] = []
    /// Blocks taken from the allocator over the loop's life, and blocks given back to it.
    private(set) var blocksAllocated = 0
    private(set) var blocksFreed = 0

    init(bufferSize: Int, budget: Int, freeLimit: Int) {
        self.bufferSize = bufferSize
        self.budget = budget
        self.freeLimit = freeLimit
        free.reserveCapacity(min(max(freeLimit, budget / bufferSize), 1024) + 1)
    }

    var heldBytes: Int { heldBuffers.load(ordering: .relaxed) * bufferSize }
    /// Below this the loop resumes the connections it paused for read memory.
    var resumeMark: Int { budget / 2 }
    var freeBlocks: Int { free.count }

    /// Any thread: the last slice of a buffer is gone; its block returns to the loop.
    func giveBack(_ block: UnsafeMutableRawPointer, wasHeld: Bool) {
        var old = returned.load(ordering: .relaxed)
        while true {
            block.storeBytes(of: old, as: UInt.self)
            let (done, seen) = returned.compareExchange(
                expected: old, desired: UInt(bitPattern: block), successOrdering: .releasing, failureOrdering: .relaxed)
            if done { break }
            old = seen
        }
        guard wasHeld else { return }
        let held = heldBuffers.wrappingSubtract(1, ordering: .relaxed).newValue
        if held * bufferSize <= resumeMark && wakeWanted.load(ordering: .relaxed)
            && wakeWanted.exchange(false, ordering: .relaxed) {
            loop?.readMemoryReleased()
        }
    }

    /// A block for a new buffer: a returned or free one, else a new allocation (loop only).
    func takeBlock() -> UnsafeMutableRawPointer {
        collectReturned()
        if let block = free.popLast() { return block }
        blocksAllocated += 1
        return UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 16)
    }

    /// The most buffers slices held at once lately (loop only): raised as buffers retire, and lowered by a quarter a
    /// second toward what is held now (`trimFree`), so a burst's worth stays free for the bursts that follow (held
    /// counts swing widely from one moment to the next under load), and is given back within seconds of quiet.
    private var recentPeak = 0
    private var peakSince: UInt64 = 0

    /// A buffer was retired while held (loop only).
    func noteHeld() {
        recentPeak = max(recentPeak, heldBuffers.load(ordering: .relaxed))
    }

    /// Free blocks worth keeping now: the recent working set, at least `freeLimit`, at most the budget's worth.
    var keepFree: Int {
        min(max(freeLimit, recentPeak, heldBuffers.load(ordering: .relaxed)), max(freeLimit, budget / bufferSize))
    }

    /// Moves returned blocks to the free list, freeing those beyond `keepFree` (loop only).
    func collectReturned() {
        var raw = returned.exchange(0, ordering: .acquiring)
        guard raw != 0 else { return }
        let keep = keepFree
        while raw != 0 {
            let block = UnsafeMutableRawPointer(bitPattern: raw)!
            raw = block.load(as: UInt.self)
            if free.count < keep {
                free.append(block)
            } else {
                block.deallocate()
                blocksFreed += 1
            }
        }
    }

    /// Frees the free blocks beyond what is worth keeping (loop only; called every iteration, cheap when there is
    /// nothing to do).
    func trimFree(now: UInt64) {
        if now &- peakSince >= 1_000_000_000 {
            let held = heldBuffers.load(ordering: .relaxed)
            recentPeak = max(held, recentPeak - (recentPeak + 3) / 4)
            peakSince = now
        }
        let keep = keepFree
        while free.count > keep {
            free.removeLast().deallocate()
            blocksFreed += 1
        }
    }

    deinit {
        collectReturned()
        for block in free { block.deallocate() }
    }
}

/// Bytes the loop just read. Valid only during the `didRead` callback; keep them with `retainedSlice()`.
public struct InboundBytes {
    /// The bytes read. Do not use the pointer after the callback returns.
    public let bytes: UnsafeRawBufferPointer
    // Unretained, both. Invariant: an InboundBytes is used only during the callback it is passed to, and meanwhile
    // the loop's pool holds the buffer as its current one (only the loop's next read replaces it) and the loop holds
    // the connection whose event it dispatches. Strong references would cost a retain and a release each per read,
    // four locked instructions a request; `unowned(unsafe)` fields did not help, as the compiler retains them
    // again to use them (callgrind). A slice cut from the bytes takes its own strong reference to the buffer.
    private let bufferRef: Unmanaged<ReadBuffer>
    let offset: Int
    private let connectionRef: Unmanaged<Connection>

    init(bytes: UnsafeRawBufferPointer, buffer: Unmanaged<ReadBuffer>, offset: Int, connection: Unmanaged<Connection>) {
        self.bytes = bytes
        bufferRef = buffer
        self.offset = offset
        connectionRef = connection
    }

    public var count: Int { bytes.count }

    /// Whether `connection` read these bytes (for the write chain's lent front).
    @inline(__always)
    func wasReadBy(_ connection: Connection) -> Bool { connectionRef.toOpaque() == Unmanaged.passUnretained(connection).toOpaque() }

    /// The bytes as a Slice that keeps the loop's buffer alive: write it to any connection without copying.
    /// Call it during the callback, on the loop thread. The slice holds the whole read buffer (64 KiB by default)
    /// until it is released, and its bytes count against this connection's share of the loop's read-memory budget.
    public func retainedSlice() -> Slice {
        charge()
        return Slice(bytes: bytes, keepalive: .object(bufferRef.takeUnretainedValue()))
    }

    /// Charges the bytes and returns one strong reference to the buffer, taken by hand, for the write chain's held
    /// reply (which gives it back exactly once).
    @inline(__always)
    func retainedOwner() -> Unmanaged<AnyObject> {
        charge()
        return Unmanaged<AnyObject>.fromOpaque(bufferRef.retain().toOpaque())
    }

    /// The bytes are retained from now on: they count against the connection that read them.
    @inline(__always)
    private func charge() {
        let end = offset + bytes.count
        bufferRef._withUnsafeGuaranteedRef { buffer in
            if end > buffer.used {
                connectionRef._withUnsafeGuaranteedRef { buffer.charge($0, bytes: end - max(buffer.used, offset)) }
                buffer.used = end
            }
        }
    }

    /// A part of the bytes as a Slice (see `retainedSlice()`).
    public func retainedSlice(_ range: Range<Int>) -> Slice {
        retainedSlice().slice(range)
    }
}

/// The loop's side of its read memory (loop only).
struct ReadBufferPool {
    let memory: ReadMemory
    /// Reads smaller than this would waste syscalls: move to another buffer when less is left.
    let minimumRead: Int
    private(set) var current: ReadBuffer
    /// The last buffers retired while held, checked again at each rotation: slices written within one loop
    /// iteration (up to 256 reads before the flush) are released by the next, and reusing the object itself
    /// allocates nothing. Beyond this many, the oldest is left to its slices and its deinit returns the block.
    private var recent: [ReadBuffer] = []
    static let recentLimit = 32
    /// Set when a rotation took the held memory over the budget: the loop then pauses the largest holders.
    var overBudget = false

    init(memory: ReadMemory) {
        self.memory = memory
        minimumRead = max(1, min(memory.bufferSize / 4, 16 * 1024))
        current = ReadBuffer(block: memory.takeBlock(), memory: memory)
        recent.reserveCapacity(Self.recentLimit + 1)
    }

    var bufferSize: Int { memory.bufferSize }

    /// The region the next read goes into.
    /// The buffer comes unretained: the pool holds it until the next call (see InboundBytes).
    mutating func nextRegion() -> (Unmanaged<ReadBuffer>, Int, UnsafeMutableRawBufferPointer) {
        if current.used > 0 && isKnownUniquelyReferenced(&current) {
            // Every slice cut from the current buffer is released already (a reply flushed within its dispatch,
            // the usual request/response shape): start it over now rather than at the rotation. The next read then
            // lands in memory still in cache instead of the next fresh line, and the charges to end are the last
            // few connections', whose state is in cache too.
            current.reset()
        } else if memory.bufferSize - current.used < minimumRead {
            rotate()
        }
        let offset = current.used
        return (Unmanaged.passUnretained(current), offset, UnsafeMutableRawBufferPointer(rebasing: current.storage[offset...]))
    }

    private mutating func rotate() {
        if isKnownUniquelyReferenced(&current) {
            current.reset()
            return
        }
        current.countedHeld = true
        memory.heldBuffers.wrappingAdd(1, ordering: .relaxed)
        memory.noteHeld()
        recent.append(current)
        var i = 0
        while i < recent.count {
            if isKnownUniquelyReferenced(&recent[i]) {
                current = recent.remove(at: i)
                release(current)
                return
            }
            i += 1
        }
        // Forget the oldest: its slices alone keep it now, and its deinit returns the block.
        if recent.count > Self.recentLimit { recent.removeFirst() }
        current = ReadBuffer(block: memory.takeBlock(), memory: memory)
        if memory.heldBytes > memory.budget { overBudget = true }
    }

    /// A buffer nobody else holds any more: no longer counted as held, its charges ended.
    private func release(_ buffer: ReadBuffer) {
        if buffer.countedHeld {
            buffer.countedHeld = false
            memory.heldBuffers.wrappingSubtract(1, ordering: .relaxed)
        }
        buffer.reset()
    }

    /// Brings the counts up to date: recent buffers whose slices are all gone stop counting as held (they stay for
    /// reuse). Returns how many recent buffers are free. Loop only; at most 32 checks.
    mutating func settle() -> Int {
        var free = 0
        var i = 0
        while i < recent.count {
            if isKnownUniquelyReferenced(&recent[i]) {
                release(recent[i])
                free += 1
            }
            i += 1
        }
        return free
    }

    /// Buffers allocated over the loop's life (blocks taken from the allocator).
    var buffersAllocated: Int { memory.blocksAllocated }
}
