// Chain nodes: one per queued slice, in manually managed memory, recycled through per-thread pools so that a
// write allocates nothing in steady state. Invariants:
// - a node is owned by exactly one party at a time: its pool's free list, a producer's private message,
//   a connection's shared stack, or its loop's private queue;
// - `keepalive` and `observer` are initialized while the node is queued and deinitialized when it is released;
// - a free node has only its `next` field initialized (the free-list link);
// - a node always returns to the pool it came from (`home`), through that pool's lock-free return stack when
//   the releasing thread is not the pool's own.
import CZeroCopyShims
import Synchronization

struct SliceNode {
    var next: UnsafeMutablePointer<SliceNode>?
    /// What is sent: base + offset ..< base + count.
    var base: UnsafeRawPointer
    var count: Int
    /// Bytes of this slice already accepted by the kernel (consumer only).
    var offset: Int
    /// The memory the caller appended. Equal to base/count unless a copying path replaced it
    /// (verify mode flags iovecs outside it as foreign).
    var userBase: UnsafeRawPointer
    var userCount: Int
    var keepalive: SliceKeepalive
    var observer: (any SliceObserver)?
    var tag: UInt64
    var home: Unmanaged<NodePool>
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
    static var current: NodePool {
        if let raw = zcr_thread_slot() {
            return Unmanaged<NodePool>.fromOpaque(raw).takeUnretainedValue()
        }
        let pool = NodePool()
        zcr_set_thread_slot(Unmanaged.passRetained(pool).toOpaque())
        return pool
    }

    /// Takes a node and initializes it for `slice`. Owner thread only.
    func take(_ slice: consuming Slice) -> NodePointer {
        let node: NodePointer
        if let n = free ?? takeReturned() {
            node = n
            free = n.pointer(to: \.next)!.pointee
        } else {
            node = NodePointer.allocate(capacity: 1)
            allocatedNodes += 1
        }
        let base = slice.bytes.baseAddress!
        let user = slice.userBytes ?? slice.bytes
        node.initialize(to: SliceNode(
            next: nil, base: base, count: slice.bytes.count, offset: 0, userBase: user.baseAddress!, userCount: user.count,
            keepalive: slice.keepalive, observer: slice.observer, tag: slice.tag, home: Unmanaged.passUnretained(self)))
        return node
    }

    private func takeReturned() -> NodePointer? {
        let raw = returned.exchange(0, ordering: .acquiring)
        return NodePointer(bitPattern: raw)
    }

    /// Deinitializes the node (dropping its keepalive: this is the release) and gives it back to its pool.
    /// `localSlot` is the calling thread's pool slot (`zcr_thread_slot()`), looked up once per batch by callers.
    static func recycle(_ node: NodePointer, localSlot: UnsafeMutableRawPointer? = zcr_thread_slot()) {
        let home = node.pointee.home.takeUnretainedValue()
        node.deinitialize(count: 1)
        if localSlot == Unmanaged.passUnretained(home).toOpaque() {
            node.pointer(to: \.next)!.initialize(to: home.free)
            home.free = node
        } else {
            home.giveBack(node)
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
