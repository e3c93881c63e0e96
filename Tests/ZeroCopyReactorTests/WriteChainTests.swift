// The write chain alone, driven by a scripted fake syscall that goes through the real syscall layer (so EINTR is
// retried and EAGAIN becomes a value exactly as in production): every iovec and every release is checked.
import CZeroCopyShims
import Glibc
import Testing
@testable import ZeroCopyReactor

/// A fake sendmsg: answers each call from a script and records the iovecs and the bytes it "sent".
final class ScriptedSocket: FlushIO {
    enum Step { case accept(Int), errno(Int32), acceptAll }
    var script: [Step]
    var calls: [[Int]] = []
    var sent: [UInt8] = []
    var callsMade = 0
    let fakeFD: Int32 = 1_000_000

    init(_ script: [Step]) { self.script = script }

    func send(_ iov: UnsafeMutableBufferPointer<iovec>, zeroCopy: Bool) throws(SystemError) -> IOResult<Int> {
        try syscall(iov)
    }

    func syscall(_ iov: UnsafeMutableBufferPointer<iovec>) throws(SystemError) -> IOResult<Int> {
        try Sys.call(.sendmsg, fd: fakeFD) { limit -> Int in
            callsMade += 1
            let step = script.isEmpty ? .acceptAll : script.removeFirst()
            calls.append(iov.map { $0.iov_len })
            let total = iov.reduce(0) { $0 + $1.iov_len }
            var take: Int
            switch step {
            case .errno(let e):
                zcr_set_errno(e)
                return -1
            case .accept(let n): take = min(n, total)
            case .acceptAll: take = total
            }
            take = min(take, limit)
            var left = take
            for v in iov where left > 0 {
                let n = min(v.iov_len, left)
                sent.append(contentsOf: UnsafeRawBufferPointer(start: v.iov_base, count: n))
                left -= n
            }
            return take
        }
    }

    func flush(_ chain: WriteChain, budget: Int = 16, verify: Bool = false, stats: inout FlushStats) -> FlushOutcome {
        let iov = IOVecArray()
        return chain.flush(iov: iov, budget: budget, options: FlushOptions(verify: verify), stats: &stats, io: self)
    }

    func flush(_ chain: WriteChain, budget: Int = 16) -> FlushOutcome {
        var stats = FlushStats()
        return flush(chain, budget: budget, stats: &stats)
    }
}

@Suite struct WriteChainTests {
    func bytes(_ n: Int, from start: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: Int(start) + $0) } }

    @Test func partialWritesAdvanceInsideTheHeadSliceAndReleaseInOrder() {
        let tracker = LifetimeTracker()
        let chain = WriteChain()
        let parts = [bytes(10, from: 0), bytes(20, from: 10), bytes(30, from: 30)]
        for (i, p) in parts.enumerated() { _ = chain.append(tracker.slice(p, tag: UInt64(i))) }
        #expect(chain.pending == 60)
        let socket = ScriptedSocket([.accept(5), .accept(20), .accept(35)])
        // A short write means the kernel is full: the flush stops and waits for EPOLLOUT.
        var stats = FlushStats()
        #expect(socket.flush(chain, stats: &stats) == .wouldBlock)
        #expect(socket.flush(chain, stats: &stats) == .wouldBlock)
        #expect(socket.flush(chain, stats: &stats) == .drained)
        #expect(stats.partialWrites == 2 && stats.wouldBlocks == 0 && stats.sendmsgCalls == 3)
        #expect(socket.calls == [[10, 20, 30], [5, 20, 30], [5, 30]])
        #expect(socket.sent == parts.flatMap { $0 })
        #expect(tracker.releasedCount == 3 && tracker.writtenCount == 3 && tracker.releasedTwice.isEmpty)
        #expect(chain.pending == 0)
    }

    @Test func wouldBlockKeepsEverythingQueuedAndResumesAtTheSameByte() {
        let tracker = LifetimeTracker()
        let chain = WriteChain()
        _ = chain.append(tracker.slice(bytes(100, from: 0), tag: 1))
        _ = chain.append(tracker.slice(bytes(50, from: 100), tag: 2))
        let socket = ScriptedSocket([.accept(70), .errno(EAGAIN)])
        var stats = FlushStats()
        #expect(socket.flush(chain, stats: &stats) == .wouldBlock)
        #expect(socket.flush(chain, stats: &stats) == .wouldBlock)
        // gh-146507: nothing is removed before the syscall result is known; the slice in flight stays queued.
        #expect(tracker.releasedCount == 0)
        #expect(chain.pending == 80)
        #expect(stats.wouldBlocks == 1 && stats.partialWrites == 1 && stats.bytesWritten == 70)
        #expect(socket.flush(chain) == .drained)
        #expect(socket.calls.last == [30, 50])
        #expect(socket.sent == bytes(150, from: 0))
        #expect(tracker.releasedCount == 2)
    }

    @Test func eintrIsRetriedBelowTheChain() {
        let chain = WriteChain()
        _ = chain.append(Slice(bytes(8, from: 0)))
        _ = chain.append(Slice(bytes(8, from: 8)))
        let socket = ScriptedSocket([.errno(EINTR), .errno(EINTR), .acceptAll])
        var stats = FlushStats()
        #expect(socket.flush(chain, stats: &stats) == .drained)
        #expect(socket.callsMade == 3)
        #expect(stats.sendmsgCalls == 1)  // the chain saw one call; the layer retried twice
        #expect(socket.sent == bytes(16, from: 0))
    }

    @Test func anErrorFailsAndEverySliceIsReleasedOnceWithIt() {
        let tracker = LifetimeTracker()
        let chain = WriteChain()
        for i in 0..<5 { _ = chain.append(tracker.slice(bytes(10, from: UInt8(i * 10)), tag: UInt64(i))) }
        let socket = ScriptedSocket([.accept(15), .errno(EPIPE)])
        #expect(socket.flush(chain) == .wouldBlock)
        let outcome = socket.flush(chain)
        #expect(outcome == .failed(.system(SystemError(errno: EPIPE, call: "sendmsg"))))
        #expect(tracker.releasedCount == 1)  // the first slice was written before the error
        #expect(chain.failAll(.system(SystemError(errno: EPIPE, call: "sendmsg"))) == 4)
        #expect(tracker.releasedCount == 5 && tracker.releasedTwice.isEmpty)
        #expect(tracker.error(0) == nil)
        #expect(tracker.error(3) == .system(SystemError(errno: EPIPE, call: "sendmsg")))
        // A sealed chain refuses later writes, releasing them at once (gh-136234: writes after the loss).
        #expect(chain.append(tracker.slice([1, 2, 3], tag: 9)) == .refused(.connectionClosed))
        #expect(tracker.released(9) == 1 && tracker.error(9) == .connectionClosed)
        #expect(chain.pending == 0)
    }

    @Test func moreThanIOVMaxSlicesGoOutIn1024EntryCalls() {
        let chain = WriteChain()
        // Slices with a byte between them: none lies right after another, so each needs its own iovec.
        let payload = bytes(2500 * 4, from: 0)
        for i in 0..<2500 { _ = chain.append(Slice(payload[(i * 4)..<(i * 4 + 3)])) }
        let socket = ScriptedSocket([])
        #expect(socket.flush(chain) == .drained)
        #expect(socket.calls.map(\.count) == [1024, 1024, 452])
        let expected: [UInt8] = (0..<2500).flatMap { (i: Int) -> ArraySlice<UInt8> in payload[(i * 4)..<(i * 4 + 3)] }
        #expect(socket.sent == expected)
    }

    /// A slice is copied into its chain node once per write: it stays small (the rare cases live in its keepalive;
    /// the largest keepalive is an ArraySlice, 32 bytes).
    @Test func aSliceStaysSmall() {
        #expect(MemoryLayout<Slice>.stride <= 80, "Slice is \(MemoryLayout<Slice>.size) bytes")
    }

    @Test func slicesThatLieEndToEndShareOneIovec() {
        let chain = WriteChain()
        let payload = bytes(5000 * 3, from: 0)
        let other = bytes(10, from: 99)
        var stats = FlushStats()
        // 5000 slices cut in order from one buffer, then a slice elsewhere, then the buffer's head again.
        for i in 0..<5000 { _ = chain.append(Slice(payload[(i * 3)..<(i * 3 + 3)])) }
        _ = chain.append(Slice(other))
        _ = chain.append(Slice(payload[0..<6]))
        let socket = ScriptedSocket([.accept(1000), .acceptAll, .acceptAll])
        #expect(socket.flush(chain, stats: &stats) == .wouldBlock)  // a short write: wait for EPOLLOUT
        #expect(socket.calls == [[3072]])  // at most IOVecArray.sliceLimit (1024) slices a call, here in one iovec
        #expect(chain.pending == 15_016 - 1000)
        #expect(socket.flush(chain, stats: &stats) == .drained)
        // The next call resumes inside slice 333 (its byte 1 of 3); each call takes 1024 slices; the last one ends
        // with the 571 slices left, then the two slices that lie elsewhere, an iovec each.
        let later: [[Int]] = Array(socket.calls.dropFirst())
        #expect(later == [[3071], [3072], [3072], [3072], [1713, 10, 6]])
        let expected: [UInt8] = payload + other + Array(payload[0..<6])
        #expect(socket.sent == expected)
        #expect(stats.slicesWritten == 5002)
        #expect(stats.coalescedSlices == 5 * 1023 + 570)
    }

    @Test func aSingleSliceIsOneIovecAndCountsAsSend() {
        let chain = WriteChain()
        _ = chain.append(Slice(bytes(64, from: 0)))
        let socket = ScriptedSocket([])
        var stats = FlushStats()
        #expect(socket.flush(chain, stats: &stats) == .drained)
        #expect(socket.calls == [[64]])
        #expect(stats.sendCalls == 1 && stats.sendmsgCalls == 0)
    }

    @Test func theAttemptBudgetBoundsOneFlush() {
        let chain = WriteChain()
        let payload = bytes(5000, from: 0)
        for i in 0..<2500 { _ = chain.append(Slice(payload[(i * 2)..<(i * 2 + 1)])) }  // apart: an iovec each
        let socket = ScriptedSocket([])
        #expect(socket.flush(chain, budget: 2) == .budgetExhausted)
        #expect(socket.callsMade == 2)
        #expect(chain.pending == 2500 - 2048)
        #expect(socket.flush(chain, budget: 2) == .drained)
        let expected: [UInt8] = (0..<2500).map { (i: Int) -> UInt8 in payload[i * 2] }
        #expect(socket.sent == expected)
    }

    /// gh-155888: an empty chunk must not stall anything: it is dropped when appended.
    @Test func zeroLengthSlicesAreDroppedAtAppend() {
        let tracker = LifetimeTracker()
        let chain = WriteChain()
        var message = OutboundMessage()
        message.append(tracker.slice([], tag: 1))
        message.append(tracker.slice([7], tag: 2))
        message.append(tracker.slice([], tag: 3))
        #expect(message.sliceCount == 1)
        #expect(chain.append(&message) == .becameNonEmpty)
        let socket = ScriptedSocket([])
        #expect(socket.flush(chain) == .drained)
        #expect(socket.calls == [[1]])
        #expect(chain.sealIfIdle())  // close is not stalled by anything left behind
    }

    /// gh-135862: progress is counted in bytes, whatever the element type behind the memory.
    @Test func partialWritesAreCountedInBytesNotElements() {
        let words: [UInt32] = [0x0403_0201, 0x0807_0605, 0x0C0B_0A09]
        let owner = ArrayOwner(words)
        let chain = WriteChain()
        _ = chain.append(Slice(unsafeBytes: owner.bytes, owner: owner))
        let socket = ScriptedSocket([.accept(3), .accept(5), .accept(4)])
        while socket.flush(chain) != .drained {}
        #expect(socket.calls == [[12], [9], [4]])
        #expect(socket.sent == Array(1...12))
    }

    @Test func appendTransitionsOnlyFromIdleScheduleAFlush() {
        let chain = WriteChain()
        #expect(chain.append(Slice([1])) == .becameNonEmpty)
        #expect(chain.append(Slice([2])) == .queued)
        let socket = ScriptedSocket([.errno(EAGAIN)])
        #expect(socket.flush(chain) == .wouldBlock)
        // While the loop waits for EPOLLOUT the chain stays active: appends do not wake it again.
        #expect(chain.append(Slice([3])) == .queued)
        #expect(socket.flush(chain) == .drained)
        #expect(socket.sent == [1, 2, 3])
        #expect(chain.append(Slice([4])) == .becameNonEmpty)
    }

    @Test func hardCapRefusesAndReleases() {
        let tracker = LifetimeTracker()
        let chain = WriteChain(highWatermark: 8, hardCap: 10)
        #expect(chain.append(tracker.slice(bytes(8, from: 0), tag: 1)) == .becameNonEmpty)
        #expect(chain.takeCrossedHigh())
        #expect(chain.append(tracker.slice(bytes(3, from: 0), tag: 2)) == .refused(.writeBufferFull(pending: 8, cap: 10)))
        #expect(tracker.released(2) == 1 && tracker.released(1) == 0)
        #expect(chain.pending == 8)
    }

    @Test func verifyModeFlagsIovecsOutsideTheCallersMemory() {
        let chain = WriteChain()
        let mine: [UInt8] = [1, 2, 3, 4]
        _ = chain.append(Slice(mine))
        let copied = mine.withUnsafeBytes { Slice(copyOf: $0) }  // what writeCopying queues: a copy of the caller's bytes
        #expect(copied.bytes.baseAddress != mine.withUnsafeBytes { $0.baseAddress })
        _ = chain.append(copied)
        let socket = ScriptedSocket([])
        var stats = FlushStats()
        #expect(socket.flush(chain, verify: true, stats: &stats) == .drained)
        #expect(stats.verifiedIovecs == 1 && stats.foreignIovecs == 1)
        withExtendedLifetime(mine) {}
    }

    @Test func droppingAnUnsentMessageReleasesItsSlices() {
        let tracker = LifetimeTracker()
        do {
            var message = OutboundMessage()
            message.append(tracker.slice([1, 2], tag: 1))
            message.append(tracker.slice([3], tag: 2))
            _ = message.byteCount
        }
        #expect(tracker.releasedCount == 2 && tracker.error(1) == .aborted)
    }

    @Test func nodesAreRecycledNotAllocatedPerWrite() {
        let chain = WriteChain()
        let socket = ScriptedSocket([])
        let payload = bytes(64, from: 0)
        for _ in 0..<10 {
            for _ in 0..<100 { _ = chain.append(Slice(payload)) }
            _ = socket.flush(chain)
        }
        let before = NodePool.current.allocatedNodes
        for _ in 0..<100 {
            for _ in 0..<100 { _ = chain.append(Slice(payload)) }
            _ = socket.flush(chain)
        }
        #expect(NodePool.current.allocatedNodes == before)
    }
    /// MSG_ZEROCOPY completions, scripted: calls are numbered as the kernel numbers them (wrapping past
    /// UInt32.max), a range that arrives early releases nothing until the calls before it complete, and then every
    /// slice is released once, in append order, after it was reported written.
    @Test func zeroCopyCompletionRangesWrapAndReleaseExactlyTheSlicesTheyCover() {
        let tracker = LifetimeTracker()
        let chain = WriteChain()
        chain.zeroCopyEnabled = true
        chain.startZeroCopyNumbering(at: UInt32.max - 1)
        let socket = ScriptedSocket([])
        let iov = IOVecArray()
        var stats = FlushStats()
        let options = FlushOptions(zeroCopyThreshold: 1)
        for tag in 0..<5 {
            _ = chain.append(tracker.slice(bytes(100, from: UInt8(tag)), tag: UInt64(tag)))
            #expect(chain.flush(iov: iov, budget: 16, options: options, stats: &stats, io: socket) == .drained)
        }
        // Calls max-1, max, 0, 1, 2 carried slices 0...4.
        #expect(stats.zeroCopySends == 5 && tracker.writtenCount == 5 && tracker.releasedCount == 0)
        #expect(chain.awaitingCount == 5)
        chain.completeZeroCopy(low: 1, high: 2, copied: false, stats: &stats)  // out of order: nothing yet
        #expect(tracker.releasedCount == 0)
        chain.completeZeroCopy(low: UInt32.max, high: 0, copied: false, stats: &stats)  // wraps; call max-1 still out
        #expect(tracker.releasedCount == 0)
        chain.completeZeroCopy(low: UInt32.max - 1, high: UInt32.max - 1, copied: false, stats: &stats)
        #expect(tracker.releasedCount == 5 && tracker.releasedTwice.isEmpty && chain.awaitingCount == 0)
        #expect(stats.zeroCopyCompletions == 5 && stats.zeroCopyCopied == 0)
        #expect(socket.sent == (0..<5).flatMap { bytes(100, from: UInt8($0)) })
        // A COPIED completion stops zero copy: the next send is a plain one and releases at once.
        _ = chain.append(tracker.slice(bytes(10, from: 9), tag: 9))
        #expect(chain.flush(iov: iov, budget: 16, options: options, stats: &stats, io: socket) == .drained)
        #expect(tracker.released(9) == 0)  // call 3 is zero copy and waits
        chain.completeZeroCopy(low: 3, high: 3, copied: true, stats: &stats)
        #expect(tracker.released(9) == 1 && !chain.zeroCopyEnabled)
        _ = chain.append(tracker.slice(bytes(10, from: 10), tag: 10))
        #expect(chain.flush(iov: iov, budget: 16, options: options, stats: &stats, io: socket) == .drained)
        #expect(tracker.released(10) == 1 && stats.zeroCopySends == 6)
    }

    /// A slice that a zero-copy call sent only part of waits for that call even when a plain call sends the rest;
    /// slices written after a waiting one wait behind it, so releases stay in append order.
    @Test func aPartlyZeroCopiedSliceWaitsForItsCallAndKeepsReleasesInOrder() {
        let tracker = LifetimeTracker()
        let chain = WriteChain()
        chain.zeroCopyEnabled = true
        let socket = ScriptedSocket([.accept(60)])
        let iov = IOVecArray()
        var stats = FlushStats()
        _ = chain.append(tracker.slice(bytes(100, from: 0), tag: 0))
        #expect(chain.flush(iov: iov, budget: 16, options: FlushOptions(zeroCopyThreshold: 1), stats: &stats, io: socket) == .wouldBlock)
        _ = chain.append(tracker.slice(bytes(100, from: 1), tag: 1))
        // Threshold now above the call's size: a plain send finishes slice 0 and sends slice 1.
        #expect(chain.flush(iov: iov, budget: 16, options: FlushOptions(zeroCopyThreshold: 1000), stats: &stats, io: socket) == .drained)
        #expect(tracker.writtenCount == 2 && tracker.releasedCount == 0 && stats.zeroCopySends == 1)
        chain.completeZeroCopy(low: 0, high: 0, copied: false, stats: &stats)
        #expect(tracker.released(0) == 1 && tracker.released(1) == 1)
    }
}

/// Keeps typed memory alive for a slice over its raw bytes.
final class ArrayOwner: @unchecked Sendable {
    let storage: UnsafeMutableBufferPointer<UInt32>
    init(_ words: [UInt32]) {
        storage = .allocate(capacity: words.count)
        _ = storage.initialize(from: words)
    }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(storage) }
    deinit { storage.deallocate() }

}
