// Chain nodes: one per queued slice, in manually managed memory, recycled through per-thread pools so that a
// write allocates nothing in steady state. Invariants:
// - a node is owned by exactly one party at a time: its pool's free list, a producer's private message,
//   a connection's shared stack, or its loop's private queue;
// - `slice` (with its keepalive and observer) is initialized while the node is queued and deinitialized when it
//   is released;
// - a free node has only its `next` field initialized (the free-list link);
// - a node always returns to the pool it came from (`home`), through that pool's lock-free return stack when
//   the releasing thread is not the pool's own;
// - a pool is never freed: when its thread exits it becomes an orphan, and the next thread that needs a pool
//   adopts it (its free nodes, and the nodes still queued that will come back to it), so threads that come and go
//   do not leave pools behind.
import CZeroCopyShims
import Glibc
import Synchronization

struct SliceNode {
    var next: UnsafeMutablePointer<SliceNode>?
    /// The slice itself, moved in whole: its owner reference (the keepalive) and observer come with it, so
    /// queuing a slice costs no reference counting, and dropping it (deinitializing the node) is the release.
    var slice: Slice
    /// Bytes of this slice already accepted by the kernel (consumer only).
    var offset: Int
    var home: Unmanaged<NodePool>
    /// The slice's length (memory or file region), read once when it is queued.
    var count: Int
    /// A file region (sent with sendfile) rather than memory.
    var isFile: Bool
    /// Set once a MSG_ZEROCOPY send carried bytes of this slice: the kernel may read its memory until the completion
    /// of `zeroCopyCall` (and of every call before it) arrives, so it is released then, not when written.
    var zeroCopyTouched: Bool
    /// The last MSG_ZEROCOPY call (the kernel's per-socket u32 counter) that carried bytes of it, or of a slice
    /// before it that is still waiting (releases stay in append order).
    var zeroCopyCall: UInt32

    /// What is sent: base + offset ..< base + count (memory slices only).
    var base: UnsafeRawPointer { slice.bytes.baseAddress! }
    /// The memory the caller appended. Equal to base/count unless a copying path replaced it
    /// (verify mode flags iovecs outside it as foreign).
    var userBase: UnsafeRawPointer { slice.userBytes.baseAddress! }
    var userCount: Int { slice.userBytes.count }
    var observer: (any SliceObserver)? { slice.observer }
    var tag: UInt64 { slice.tag }
}

typealias NodePointer = UnsafeMutablePointer<SliceNode>

/// A thread's node pool. Only its thread takes nodes; any thread may give them back.
final class NodePool: @unchecked Sendable {
    /// Owner thread only.
    private var free: NodePointer?
    /// Nodes given back by other threads: an intrusive Treiber stack that is only pushed to and taken whole,
    /// so there is no ABA problem. Pushes use release ordering (the node's fields were deinitialized before);
    /// the owner takes with acquire ordering.
    private let returned = Atomic<UInt>(0)
    /// Nodes allocated over the pool's life (owner thread only; for tests and reports).
    private(set) var allocatedNodes = 0
    /// Nodes taken and nodes given back, to tell how many slices are still queued anywhere. The owner's own counts
    /// are written by the owner alone (relaxed load and store: no read-modify-write on the hot path); other threads'
    /// returns use an atomic add beside the return stack they already touch. Exact whenever the process is quiet.
    private let takenCount = Atomic<Int>(0)
    private let returnedHere = Atomic<Int>(0)
    private let returnedElsewhere = Atomic<Int>(0)

    /// Nodes taken over the pool's life (for tests: how many slices went through a chain's list).
    var takenNodes: Int { takenCount.load(ordering: .relaxed) }

    /// Slices taken from this pool and not yet released.
    var outstanding: Int {
        takenCount.load(ordering: .relaxed) - returnedHere.load(ordering: .relaxed)
            - returnedElsewhere.load(ordering: .relaxed)
    }

    /// Every pool ever made, and those whose thread has exited (waiting to be adopted). Pools are never freed.
    private static let registry = Locked<(all: [Unmanaged<NodePool>], orphans: [Unmanaged<NodePool>])>(([], []))

    /// Pools made over the process's life.
    static var poolCount: Int { registry.withLock { $0.all.count } }

    /// Times this pool was adopted by a new thread after its own exited (under the registry's lock).
    private var adoptions = 0

    /// True once `pool`'s thread has exited and the pool is waiting for, or has found, a new thread (for tests).
    static func wasReclaimed(_ pool: NodePool) -> Bool {
        registry.withLock { r in r.orphans.contains { $0.toOpaque() == Unmanaged.passUnretained(pool).toOpaque() } || pool.adoptions > 0 }
    }

    /// Slices queued and not yet released, in the whole process (all pools).
    static var outstandingInProcess: Int { registry.withLock { $0.all.reduce(0) { $0 + $1.takeUnretainedValue().outstanding } } }

    /// The key whose destructor turns an exiting thread's pool into an orphan.
    private static let exitKey: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { raw in
            guard let raw else { return }
            // The thread is exiting: nothing of it runs any more, so its pool's owner-only state is handed over
            // whole; the registry's lock orders it before the adopter's first use.
            let pool = Unmanaged<NodePool>.fromOpaque(raw)
            NodePool.registry.withLock { $0.orphans.append(pool) }
        }
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
        return key
    }()

    /// The calling thread's pool, created (or adopted from an exited thread) on first use.
    static var current: NodePool { currentUnmanaged.takeUnretainedValue() }

    /// The calling thread's pool without a strong reference: the registry holds one for the life of the process,
    /// so hot paths use it through `_withUnsafeGuaranteedRef` and skip a retain/release pair per slice.
    static var currentUnmanaged: Unmanaged<NodePool> {
        if let raw = zcr_thread_slot() { return Unmanaged<NodePool>.fromOpaque(raw) }
        let pool = registry.withLock { r -> Unmanaged<NodePool> in
            if let orphan = r.orphans.popLast() {
                orphan._withUnsafeGuaranteedRef { $0.adoptions += 1 }
                return orphan
            }
            let pool = Unmanaged.passRetained(NodePool())
            r.all.append(pool)
            return pool
        }
        zcr_set_thread_slot(pool.toOpaque())
        pthread_setspecific(exitKey, pool.toOpaque())
        return pool
    }

    /// Nodes are allocated this many at a time (one malloc per block, never freed: pools live as long as the
    /// process), so a pool that grows costs one allocation per block, not one per node.
    static let blockNodes = 64

    /// Takes a node of `pool` (the calling thread's) and moves `slice` into it: appending a slice costs no reference
    /// counting beyond the one retain its creation made.
    static func take(_ slice: consuming Slice, from pool: Unmanaged<NodePool>) -> NodePointer {
        let node = pool._withUnsafeGuaranteedRef { $0.takeNode() }
        let count = slice.count
        let isFile = slice.isFileRegion
        node.initialize(to: SliceNode(
            next: nil, slice: slice, offset: 0, home: pool, count: count, isFile: isFile, zeroCopyTouched: false,
            zeroCopyCall: 0))
        return node
    }

    /// A free node, its fields uninitialized but `next`. Owner thread only.
    private func takeNode() -> NodePointer {
        takenCount.store(takenCount.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        let node = free ?? takeReturned() ?? grow()
        free = node.pointer(to: \.next)!.pointee
        return node
    }

    /// Allocates a block of nodes, links all but the first into the free list and returns the first (its `next`
    /// initialized, like every free node).
    private func grow() -> NodePointer {
        let block = NodePointer.allocate(capacity: Self.blockNodes)
        allocatedNodes += Self.blockNodes
        for i in 0..<Self.blockNodes {
            (block + i).pointer(to: \.next)!.initialize(to: i + 1 < Self.blockNodes ? block + i + 1 : free)
        }
        return block
    }

    private func takeReturned() -> NodePointer? {
        let raw = returned.exchange(0, ordering: .acquiring)
        return NodePointer(bitPattern: raw)
    }

    /// Deinitializes the node (dropping its keepalive: this is the release) and gives it back to its pool.
    /// `localSlot` is the calling thread's pool slot (`zcr_thread_slot()`), looked up once per batch by callers.
    /// The pool is reached without a strong reference: pools are never freed (see `currentUnmanaged`).
    static func recycle(_ node: NodePointer, localSlot: UnsafeMutableRawPointer? = zcr_thread_slot()) {
        let home = node.pointee.home
        node.deinitialize(count: 1)
        if localSlot == home.toOpaque() {
            home._withUnsafeGuaranteedRef { pool in
                node.pointer(to: \.next)!.initialize(to: pool.free)
                pool.free = node
                pool.returnedHere.store(pool.returnedHere.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            }
        } else {
            home._withUnsafeGuaranteedRef { $0.giveBack(node) }
        }
    }

    private func giveBack(_ node: NodePointer) {
        var old = returned.load(ordering: .relaxed)
        while true {
            node.pointer(to: \.next)!.initialize(to: NodePointer(bitPattern: old))
            let (exchanged, current) = returned.compareExchange(
                expected: old, desired: UInt(bitPattern: node), successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { break }
            old = current
        }
        returnedElsewhere.wrappingAdd(1, ordering: .relaxed)
    }
}
