// Small shared pieces of the scenarios: a one-shot completion the loops signal and the runner waits on, a counted
// payload that owns its bytes, and a write counter. None of them allocates when used on a loop thread.
import Dispatch
import Synchronization
import ZeroCopyReactor

/// A one-shot event with the monotonic time it happened, and an optional failure message.
final class Completion: Sendable {
    private let doneAt = Atomic<UInt64>(0)
    private let failureText = Mutex<String?>(nil)
    private let semaphore = DispatchSemaphore(value: 0)

    /// Marks it done now (the first call wins).
    func complete() {
        let now = max(1, EventLoop.now())
        if doneAt.compareExchange(expected: 0, desired: now, ordering: .acquiringAndReleasing).exchanged {
            semaphore.signal()
        }
    }

    /// Marks it done with a failure (allocates: only for the failure path).
    func fail(_ message: String) {
        failureText.withLock { if $0 == nil { $0 = message } }
        complete()
    }

    /// Waits until it is done or `seconds` passed; true if done.
    func wait(seconds: Double) -> Bool {
        if isDone { return true }
        guard seconds > 0 else { return false }
        if semaphore.wait(timeout: .now() + .nanoseconds(Int(seconds * 1e9))) == .success {
            semaphore.signal()  // later waits return at once
            return true
        }
        return isDone
    }

    var isDone: Bool { doneAt.load(ordering: .acquiring) != 0 }
    var time: UInt64? {
        let t = doneAt.load(ordering: .acquiring)
        return t == 0 ? nil : t
    }
    var failure: String? { failureText.withLock { $0 } }
}

/// Counts down to zero, then completes.
final class Countdown: Sendable {
    private let left: Atomic<Int>
    let completion = Completion()

    init(_ count: Int) {
        left = Atomic(count)
        if count <= 0 { completion.complete() }
    }

    func tick() {
        if left.wrappingSubtract(1, ordering: .relaxed).newValue == 0 { completion.complete() }
    }
}

/// Bytes allocated and touched before anything is measured, owned by this object: slices of it keep it alive.
/// Byte i is i % 251 (the blast pattern), so a receiver could check what arrived.
final class Payload: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer

    init(byteCount: Int) {
        precondition(byteCount > 0)
        bytes = .allocate(byteCount: byteCount, alignment: 4096)
        // Write the pattern once over 251 * 256 bytes, then double it: every page is touched (resident) now.
        let first = min(byteCount, 251 * 256)
        for i in 0..<first { bytes[i] = UInt8(i % 251) }
        var filled = first
        while filled < byteCount {
            let n = min(filled - filled % 251, byteCount - filled)
            (bytes.baseAddress! + filled).copyMemory(from: bytes.baseAddress!, byteCount: n)
            filled += n
        }
    }

    deinit { bytes.deallocate() }

    var count: Int { bytes.count }

    func raw(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    /// A borrowed slice: no copy, keeps this payload alive until released.
    func slice(_ range: Range<Int>) -> Slice {
        Slice(unsafeBytes: raw(range), owner: self)
    }
}

/// Connection.write calls, counted from any thread (relaxed: a statistic read at window edges).
final class WriteCount: Sendable {
    private let value = Atomic<Int>(0)
    func add(_ n: Int = 1) { value.wrappingAdd(n, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}
