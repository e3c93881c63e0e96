// The loop's timers: an indexed binary min-heap on (deadline, sequence) in monotonic nanoseconds. Loop-confined.
// Each timer lives in a slot of `slots`; the heap holds slot numbers and every slot knows its heap position, so a
// cancel removes the entry at once in O(log n) and drops its closure (and whatever the closure holds, such as a
// closed connection) right there. A TimerID carries its slot's generation, so cancelling a timer that already ran
// (its slot maybe reused since) does nothing. Slots and heap storage are reused: steady state allocates nothing
// beyond the closure the caller made.
// Deadlines are kept to the nanosecond; the loop waits with epoll_pwait2 where the kernel has it (well under a
// millisecond of slack) and with epoll_wait rounded up to the next millisecond where it does not.

/// Identifies a scheduled timer, for `EventLoop.cancelTimer`.
public struct TimerID: Hashable, Sendable {
    let slot: UInt32
    let generation: UInt32
}

struct TimerHeap {
    private struct Slot {
        var deadline: UInt64 = 0
        /// Order among equal deadlines: scheduling order.
        var sequence: UInt64 = 0
        /// Non-zero for a repeating timer: it goes back in the heap `interval` after each run.
        var interval: UInt64 = 0
        var action: (() -> Void)?
        /// Position in `heap`, or -1 while the slot is free or its timer is running.
        var position = -1
        var generation: UInt32 = 0
    }

    private var slots: [Slot] = []
    private var freeSlots: [UInt32] = []
    private var heap: [UInt32] = []
    private var nextSequence: UInt64 = 0

    var isEmpty: Bool { heap.isEmpty }
    /// Live (scheduled, not cancelled) timers.
    var count: Int { heap.count }

    mutating func schedule(at deadline: UInt64, repeating interval: UInt64 = 0, _ action: @escaping () -> Void) -> TimerID {
        let slot: UInt32
        if let free = freeSlots.popLast() { slot = free } else {
            slot = UInt32(slots.count)
            slots.append(Slot())
        }
        nextSequence += 1
        slots[Int(slot)].deadline = deadline
        slots[Int(slot)].sequence = nextSequence
        slots[Int(slot)].interval = interval
        slots[Int(slot)].action = action
        push(slot)
        return TimerID(slot: slot, generation: slots[Int(slot)].generation)
    }

    /// Removes the timer and drops its closure now. A timer that already ran (or was cancelled) is left alone.
    /// A repeating timer cancelled from its own action does not run again.
    mutating func cancel(_ timer: TimerID) {
        let i = Int(timer.slot)
        guard i < slots.count, slots[i].generation == timer.generation, slots[i].action != nil else { return }
        let position = slots[i].position
        if position >= 0 { remove(at: position) }
        freeSlot(timer.slot)
    }

    /// The earliest deadline.
    func nextDeadline() -> UInt64? {
        heap.isEmpty ? nil : slots[Int(heap[0])].deadline
    }

    /// Takes the earliest timer due at `now`, if any, and returns its action. A one-shot timer is gone once taken;
    /// a repeating one is back in the heap for its next run before its action runs (so the action may cancel it).
    /// The loop calls this one timer at a time, so a timer cancelled by an earlier action of the same round never
    /// runs.
    mutating func popDue(now: UInt64) -> (() -> Void)? {
        guard !heap.isEmpty, slots[Int(heap[0])].deadline <= now else { return nil }
        let top = heap[0]
        let action = slots[Int(top)].action!
        remove(at: 0)
        if slots[Int(top)].interval > 0 {
            let t = Int(top)
            slots[t].deadline = max(slots[t].deadline &+ slots[t].interval, now &+ 1)
            nextSequence += 1
            slots[Int(top)].sequence = nextSequence
            push(top)
        } else {
            freeSlot(top)
        }
        return action
    }

    private mutating func freeSlot(_ slot: UInt32) {
        slots[Int(slot)].action = nil
        slots[Int(slot)].position = -1
        slots[Int(slot)].generation &+= 1
        freeSlots.append(slot)
    }

    private mutating func push(_ slot: UInt32) {
        heap.append(slot)
        slots[Int(slot)].position = heap.count - 1
        siftUp(heap.count - 1)
    }

    private mutating func remove(at position: Int) {
        let removed = heap[position]
        let last = heap.removeLast()
        slots[Int(removed)].position = -1
        guard position < heap.count else { return }
        heap[position] = last
        slots[Int(last)].position = position
        siftDown(position)
        siftUp(position)
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        let x = Int(heap[a]), y = Int(heap[b])
        let dx = slots[x].deadline, dy = slots[y].deadline
        return dx < dy || (dx == dy && slots[x].sequence < slots[y].sequence)
    }

    private mutating func swapEntries(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        slots[Int(heap[a])].position = a
        slots[Int(heap[b])].position = b
    }

    private mutating func siftUp(_ index: Int) {
        var i = index
        while i > 0 {
            let parent = (i - 1) / 2
            if !less(i, parent) { return }
            swapEntries(i, parent)
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
            swapEntries(i, smallest)
            i = smallest
        }
    }
}
