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
        /// Non-zero for a repeating timer: it goes back in the heap `interval` after each run.
        var interval: UInt64
        var action: () -> Void
    }

    private var heap: [Entry] = []
    private var cancelled: Set<UInt64> = []
    private var nextID: UInt64 = 1

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count - cancelled.count }

    mutating func schedule(at deadline: UInt64, repeating interval: UInt64 = 0, _ action: @escaping () -> Void) -> TimerID {
        let id = nextID
        nextID += 1
        heap.append(Entry(deadline: deadline, id: id, interval: interval, action: action))
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

    /// Moves the actions due at `now` into `due`, earliest first (at most `limit`, so a timer that reschedules
    /// itself at `now` cannot hold the loop). `due` is the caller's reused scratch array: no allocation per firing.
    mutating func popDue(now: UInt64, into due: inout [() -> Void], limit: Int = 4096) {
        while due.count < limit, let top = heap.first, top.deadline <= now {
            popTop()
            if cancelled.remove(top.id) != nil { continue }
            due.append(top.action)
            if top.interval > 0 {
                var next = top
                next.deadline = max(top.deadline &+ top.interval, now &+ 1)
                heap.append(next)
                siftUp(heap.count - 1)
            }
        }
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
