// The loop's own reply held outside the chain's lock-free list (`WriteChain.holdFront`), driven by the scripted
// socket: it goes out with one send and no node; cut short or refused by the kernel it moves into the list at the
// byte it reached; it stays ahead of everything appended after it, from any thread; and it is released exactly
// once on every path (sent, moved, failed), before whatever was queued behind it.
import Glibc
import Synchronization
import Testing
@testable import ZeroCopyReactor

@Suite struct WriteChainFrontTests {
    func bytes(_ n: Int, from start: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: Int(start) + $0) } }

    /// Memory with an owner object, the kind of slice the chain holds (as read bytes and pooled buffers are).
    final class Owned: @unchecked Sendable {
        let memory: UnsafeMutableRawBufferPointer
        let count: Int
        init(_ bytes: [UInt8]) {
            count = bytes.count
            memory = .allocate(byteCount: max(bytes.count, 1), alignment: 8)
            memory.copyBytes(from: bytes)
        }
        deinit { memory.deallocate() }
        var slice: Slice { Slice(unsafeBytes: UnsafeRawBufferPointer(rebasing: memory[0..<count]), owner: self) }
    }

    /// Records the order of releases, and their errors.
    final class ReleaseOrder: SliceObserver, @unchecked Sendable {
        var written: [UInt64] = []
        var released: [(tag: UInt64, error: ReactorError?)] = []
        func sliceWritten(tag: UInt64, byteCount: Int) { written.append(tag) }
        func sliceReleased(tag: UInt64, error: ReactorError?) { released.append((tag, error)) }
        func slice(_ b: [UInt8], tag: UInt64) -> Slice {
            var s = Owned(b).slice
            s.tag = tag
            s.observer = self
            return s
        }
    }

    func hold(_ chain: WriteChain, _ slice: Slice) {
        #expect(chain.holdFront(slice, zeroCopyThreshold: nil))
    }

    @Test func aHeldReplyGoesOutWithOneSendAndNoNode() {
        let order = ReleaseOrder()
        let chain = WriteChain(highWatermark: 1 << 20)
        let socket = ScriptedSocket([])
        let taken = NodePool.current.takenNodes
        hold(chain, order.slice(bytes(64, from: 0), tag: 1))
        #expect(chain.pending == 0 && chain.frontBytes == 64 && chain.hasQueuedBytes)
        var stats = FlushStats()
        #expect(socket.flush(chain, stats: &stats) == .drained)
        #expect(socket.calls == [[64]] && socket.sent == bytes(64, from: 0))
        #expect(stats.sendCalls == 1 && stats.sendmsgCalls == 0 && stats.slicesWritten == 1 && stats.bytesWritten == 64)
        #expect(order.written == [1] && order.released.map(\.tag) == [1] && order.released[0].error == nil)
        #expect(NodePool.current.takenNodes == taken)  // never in the list
        #expect(chain.frontBytes == 0 && !chain.hasQueuedBytes)
        // Idle again: the next reply is held too, and the next producer's append still schedules a flush.
        #expect(chain.canHoldFront(count: 8, zeroCopyThreshold: nil))
        #expect(chain.append(Slice(bytes(8, from: 0))) == .becameNonEmpty)
    }

    @Test func aHeldReplyCutShortResumesFromTheListAtTheByteItReached() {
        let order = ReleaseOrder()
        let chain = WriteChain(highWatermark: 1 << 20)
        let socket = ScriptedSocket([.accept(30)])
        hold(chain, order.slice(bytes(100, from: 0), tag: 1))
        var stats = FlushStats()
        #expect(socket.flush(chain, stats: &stats) == .wouldBlock)
        #expect(stats.partialWrites == 1 && stats.bytesWritten == 30 && stats.slicesWritten == 0)
        #expect(chain.frontBytes == 0 && chain.pending == 70 && order.released.isEmpty)
        // A producer appends while the rest waits for EPOLLOUT: it is queued behind, and schedules nothing.
        #expect(chain.append(order.slice(bytes(50, from: 100), tag: 2)) == .queued)
        #expect(socket.flush(chain, stats: &stats) == .drained)
        #expect(socket.calls == [[100], [70, 50]])
        #expect(socket.sent == bytes(150, from: 0))
        #expect(order.released.map(\.tag) == [1, 2] && order.written == [1, 2] && chain.pending == 0)
    }

    @Test func eagainMovesTheWholeReplyIntoTheList() {
        let order = ReleaseOrder()
        let chain = WriteChain(highWatermark: 1 << 20)
        let socket = ScriptedSocket([.errno(EAGAIN)])
        hold(chain, order.slice(bytes(40, from: 0), tag: 1))
        var stats = FlushStats()
        #expect(socket.flush(chain, stats: &stats) == .wouldBlock)
        #expect(stats.wouldBlocks == 1 && stats.bytesWritten == 0 && chain.pending == 40 && order.released.isEmpty)
        #expect(socket.flush(chain) == .drained)
        #expect(socket.sent == bytes(40, from: 0) && order.released.map(\.tag) == [1])
    }

    @Test func whatAnotherThreadPublishesWhileTheReplyIsHeldGoesBehindIt() {
        let order = ReleaseOrder()
        let chain = WriteChain(highWatermark: 1 << 20)
        hold(chain, order.slice(bytes(10, from: 0), tag: 1))
        let later = bytes(20, from: 10)
        onThreads(1) { _ in _ = chain.append(order.slice(later, tag: 2)) }
        #expect(!chain.canHoldFront(count: 8, zeroCopyThreshold: nil))
        let socket = ScriptedSocket([])
        #expect(socket.flush(chain) == .drained)
        #expect(socket.calls == [[10], [20]] && socket.sent == bytes(30, from: 0))
        #expect(order.released.map(\.tag) == [1, 2])
    }

    @Test func aSecondWriteOnTheLoopMovesTheHeldReplyAheadOfIt() {
        let order = ReleaseOrder()
        let chain = WriteChain(highWatermark: 1 << 20)
        hold(chain, order.slice(bytes(10, from: 0), tag: 1))
        chain.spillFront()
        #expect(chain.frontBytes == 0 && chain.pending == 10)
        var message = OutboundMessage()
        message.append(order.slice(bytes(20, from: 10), tag: 2))
        message.append(order.slice(bytes(5, from: 30), tag: 3))
        #expect(chain.append(&message) == .queued)  // the head is active: the flush at the dispatch's end is due
        let socket = ScriptedSocket([])
        #expect(socket.flush(chain) == .drained)
        #expect(socket.calls == [[10, 20, 5]] && socket.sent == bytes(35, from: 0))
        #expect(order.released.map(\.tag) == [1, 2, 3])
    }

    /// An observer that writes to the chain when its slice is written, the way a connection's write does on the
    /// loop (the held reply, if any, moves to the list first).
    final class WritesWhenWritten: SliceObserver, @unchecked Sendable {
        let chain: WriteChain
        let next: [UInt8]
        var released: [UInt64] = []
        init(chain: WriteChain, next: [UInt8]) { self.chain = chain; self.next = next }
        func sliceWritten(tag: UInt64, byteCount: Int) {
            guard tag == 1 else { return }
            chain.spillFront()
            var s = Owned(next).slice
            s.tag = 2
            s.observer = self
            _ = chain.append(s)
        }
        func sliceReleased(tag: UInt64, error: ReactorError?) { released.append(tag) }
    }

    @Test func aWriteFromTheHeldRepliesObserverFollowsItOnce() {
        // Before the fix the observer's write moved the reply, already sent whole, to the list: it went out twice.
        let chain = WriteChain(highWatermark: 1 << 20)
        let observer = WritesWhenWritten(chain: chain, next: bytes(5, from: 10))
        var first = Owned(bytes(10, from: 0)).slice
        first.tag = 1
        first.observer = observer
        hold(chain, first)
        let socket = ScriptedSocket([])
        #expect(socket.flush(chain) == .drained)
        #expect(socket.sent == bytes(15, from: 0))
        #expect(socket.calls == [[10], [5]])
        #expect(observer.released == [1, 2] && chain.pending == 0)
    }

    @Test func failingTheChainReleasesTheHeldReplyFirstAndOnce() {
        let order = ReleaseOrder()
        let chain = WriteChain(highWatermark: 1 << 20)
        hold(chain, order.slice(bytes(10, from: 0), tag: 1))
        _ = chain.append(order.slice(bytes(10, from: 10), tag: 2))
        #expect(chain.failAll(.aborted) == 2)
        #expect(order.released.map(\.tag) == [1, 2] && order.released.allSatisfy { $0.error == .aborted })
        #expect(order.written.isEmpty && chain.pending == 0 && chain.frontBytes == 0)
        #expect(chain.failAll(.aborted) == 0 && order.released.count == 2)
    }

    @Test func aSendErrorLeavesTheReplyToTheFailureThatFollows() {
        let order = ReleaseOrder()
        let chain = WriteChain(highWatermark: 1 << 20)
        let socket = ScriptedSocket([.errno(ECONNRESET)])
        hold(chain, order.slice(bytes(10, from: 0), tag: 1))
        let error = ReactorError.system(SystemError(errno: ECONNRESET, call: "sendmsg"))
        #expect(socket.flush(chain) == .failed(error))
        #expect(order.released.isEmpty)
        #expect(chain.failAll(error) == 1)
        #expect(order.released.count == 1 && order.released[0].error == error && order.written.isEmpty)
    }

    @Test func aHeldReplyKeepsTheChainFromSealingUntilItIsSent() {
        let chain = WriteChain(highWatermark: 1 << 20)
        hold(chain, Owned(bytes(10, from: 0)).slice)
        #expect(!chain.sealIfIdle())
        #expect(ScriptedSocket([]).flush(chain) == .drained)
        #expect(chain.sealIfIdle())
        #expect(!chain.canHoldFront(count: 8, zeroCopyThreshold: nil))
    }

    @Test func onlyASmallReplyWithAnOwnerToAnOpenIdleChainIsHeld() throws {
        let chain = WriteChain(highWatermark: 1000, hardCap: 600)
        #expect(chain.canHoldFront(count: 600, zeroCopyThreshold: nil))
        #expect(!chain.canHoldFront(count: 0, zeroCopyThreshold: nil))
        #expect(!chain.canHoldFront(count: 601, zeroCopyThreshold: nil))  // over the hard cap
        #expect(!WriteChain(highWatermark: 1000).canHoldFront(count: 1000, zeroCopyThreshold: nil))  // the watermark
        // Arrays, copies and inline values keep their bytes in a value, not an object: they go through the list.
        #expect(!chain.holdFront(Slice(bytes(10, from: 0)), zeroCopyThreshold: nil))
        #expect(!bytes(10, from: 0).withUnsafeBytes { chain.holdFront(Slice(copyOf: $0), zeroCopyThreshold: nil) })
        #expect(chain.frontBytes == 0)
        chain.zeroCopyEnabled = true
        #expect(!chain.canHoldFront(count: 100, zeroCopyThreshold: 100))  // MSG_ZEROCOPY wanted
        #expect(chain.canHoldFront(count: 99, zeroCopyThreshold: 100))
        chain.zeroCopyEnabled = false
        _ = chain.append(Slice(bytes(10, from: 0)))
        #expect(!chain.canHoldFront(count: 10, zeroCopyThreshold: nil))  // not idle
        _ = ScriptedSocket([]).flush(chain)
        chain.refuseNewAppends()
        #expect(!chain.canHoldFront(count: 10, zeroCopyThreshold: nil))  // closing
    }

    @Test func unownedMemoryIsHeldAndVerifiedToo() {
        let chain = WriteChain(highWatermark: 1 << 20)
        let memory = Owned(bytes(16, from: 0))
        var stats = FlushStats()
        hold(chain, Slice(unsafeUnownedBytes: UnsafeRawBufferPointer(rebasing: memory.memory[0..<16])))
        let socket = ScriptedSocket([])
        #expect(socket.flush(chain, verify: true, stats: &stats) == .drained)
        #expect(stats.verifiedIovecs == 1 && stats.foreignIovecs == 0 && socket.sent == bytes(16, from: 0))
    }
}
