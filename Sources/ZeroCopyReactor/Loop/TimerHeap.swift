// The loop's timers: a binary min-heap on (deadline, sequence) in monotonic nanoseconds, with lazy cancellation.
// Loop-confined. Deadlines are kept to the nanosecond and the loop waits with epoll_pwait2, so precision is
// what the scheduler gives (well under a millisecond), not epoll_wait's millisecond.

/// Identifies a scheduled timer, for `EventLoop.cancelTimer`.
public struct TimerID: Hashable, Sendable {
    let value: UInt64
}

struct TimerHeap {
    private struct Entry {
        var deadline: UInt64
        var id: UInt64
        var action: () -> Void
    }

    private var heap: [Entry] = []
    private var cancelled: Set<UInt64> = []
    private var nextID: UInt64 = 1

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count - cancelled.count }

    mutating func schedule(at deadline: UInt64, _ action: @escaping () -> Void) -> TimerID {
        let id = nextID
        nextID += 1
        heap.append(Entry(deadline: deadline, id: id, action: action))
        siftUp(heap.count - 1)
        return TimerID(value: id)
    }

    mutating func cancel(_ timer: TimerID) {
        if heap.contains(where: { $0.id == timer.value }) { cancelled.insert(timer.value) }
    }

    /// The earliest live deadline.
    mutating func nextDeadline() -> UInt64? {
        while let top = heap.first, cancelled.remove(top.id) != nil { popTop() }
        return heap.first?.deadline
    }

    /// Removes and returns the actions due at `now`, earliest first (at most `limit`, so a timer that
    /// reschedules itself at `now` cannot hold the loop).
    mutating func popDue(now: UInt64, limit: Int = 4096) -> [() -> Void] {
        var due: [() -> Void] = []
        while due.count < limit, let top = heap.first, top.deadline <= now {
            popTop()
            if cancelled.remove(top.id) == nil { due.append(top.action) }
        }
        return due
    }

    private mutating func popTop() {
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        heap[a].deadline < heap[b].deadline || (heap[a].deadline == heap[b].deadline && heap[a].id < heap[b].id)
    }

    private mutating func siftUp(_ index: Int) {
        var i = index
        while i > 0 {
            let parent = (i - 1) / 2
            if !less(i, parent) { return }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func siftDown(_ index: Int) {
        var i = index
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < heap.count && less(l, smallest) { smallest = l }
            if r < heap.count && less(r, smallest) { smallest = r }
            if smallest == i { return }
            heap.swapAt(i, smallest)
            i = smallest
        }
    }
}
