// Chain nodes: one per queued slice, in manually managed memory, recycled through per-thread pools so that a
// write allocates nothing in steady state. Invariants:
// - a node is owned by exactly one party at a time: its pool's free list, a producer's private message,
//   a connection's shared stack, or its loop's private queue;
// - `slice` (with its keepalive and observer) is initialized while the node is queued and deinitialized when it
//   is released;
// - a free node has only its `next` field initialized (the free-list link);
// - a node always returns to the pool it came from (`home`), through that pool's lock-free return stack when
//   the releasing thread is not the pool's own.
import CZeroCopyShims
import Synchronization

struct SliceNode {
    var next: UnsafeMutablePointer<SliceNode>?
    /// The slice itself, moved in whole: its owner reference (the keepalive) and observer come with it, so
    /// queuing a slice costs no reference counting, and dropping it (deinitializing the node) is the release.
    var slice: Slice
    /// Bytes of this slice already accepted by the kernel (consumer only).
    var offset: Int
    var home: Unmanaged<NodePool>

    /// What is sent: base + offset ..< base + count.
    var base: UnsafeRawPointer { slice.bytes.baseAddress! }
    var count: Int { slice.bytes.count }
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

    /// The calling thread's pool, created on first use. Pools live as long as the process
    /// (a thread that exits leaves its pool, and its nodes, to be reachable by nodes still queued).
    static var current: NodePool { currentUnmanaged.takeUnretainedValue() }

    /// The calling thread's pool without a strong reference: the thread slot holds one for the life of the process,
    /// so hot paths use it through `_withUnsafeGuaranteedRef` and skip a retain/release pair per slice.
    static var currentUnmanaged: Unmanaged<NodePool> {
        if let raw = zcr_thread_slot() { return Unmanaged<NodePool>.fromOpaque(raw) }
        let pool = Unmanaged.passRetained(NodePool())
        zcr_set_thread_slot(pool.toOpaque())
        return pool
    }

    /// Nodes are allocated this many at a time (one malloc per block, never freed: pools live as long as the
    /// process), so a pool that grows costs one allocation per block, not one per node.
    static let blockNodes = 64

    /// Takes a node of `pool` (the calling thread's) and moves `slice` into it: appending a slice costs no reference
    /// counting beyond the one retain its creation made.
    static func take(_ slice: consuming Slice, from pool: Unmanaged<NodePool>) -> NodePointer {
        let node = pool._withUnsafeGuaranteedRef { $0.takeNode() }
        node.initialize(to: SliceNode(next: nil, slice: slice, offset: 0, home: pool))
        return node
    }

    /// A free node, its fields uninitialized but `next`. Owner thread only.
    private func takeNode() -> NodePointer {
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
            if exchanged { return }
            old = current
        }
    }
}
