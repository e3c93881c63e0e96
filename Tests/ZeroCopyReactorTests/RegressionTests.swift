// One test for each regression CPython shipped after its zero-copy write change (see shared/research/write-path.md,
// "Pitfalls seen in the wild"), run against this library.
import Glibc
import Synchronization
import Testing
@testable import ZeroCopyReactor

@Suite struct CPythonRegressionTests {
    /// gh-103462: after a partial sendmsg of a gathered write, the tail was never sent (no writer registered).
    @Test func theTailOfAGatheredWriteIsSentAfterAPartialWrite() throws {
        var random = TestRandom(seed: 11)
        let parts = (0..<8).map { _ in random.bytes(1 << 20) }
        let (pool, address) = try makeServer(configure: { $0.highWatermark = 1 << 30; $0.lowWatermark = 1 }) { _ in
            let h = ClosureHandler()
            h.onOpen = { c in
                var m = OutboundMessage()
                for p in parts { m.append(Slice(p)) }
                try! c.write(&m)
                c.close()
            }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address, receiveBuffer: 8192)
        #expect(peer.readAll(chunk: 4096) == parts.flatMap { $0 })
        #expect(pool.counters()[0].write.partialWrites > 0)
    }

    /// gh-127655: gathered writes skipped flow control. A gathered message counts toward the watermarks.
    @Test func gatheredWritesAreSubjectToFlowControl() throws {
        let unwritable = Signal()
        let seenWritable = Box<Bool>()
        let (pool, address) = try makeServer(configure: { $0.highWatermark = 64 * 1024; $0.lowWatermark = 32 * 1024 }) { _ in
            let h = ClosureHandler()
            h.onOpen = { c in
                var m = OutboundMessage()
                for _ in 0..<40 { m.append(Slice([UInt8](repeating: 1, count: 64 * 1024))) }
                try! c.write(&m)
                seenWritable.set(c.isWritable)
            }
            h.onWritability = { _, writable in if !writable { unwritable.fire() } }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)  // does not read yet
        #expect(seenWritable.wait() == false)
        #expect(unwritable.wait())
        #expect(peer.read(exactly: 40 * 64 * 1024).count == 40 * 64 * 1024)
    }

    /// gh-136234: writing after the connection was lost crashed; here it is a clear error and the slice is released.
    @Test func writesAfterTheConnectionWasLostFailCleanly() throws {
        let tracker = LifetimeTracker(expecting: 2)
        let closed = Box<Connection>()
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onClose = { c, _ in closed.set(c) }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        peer.reset()
        let connection = try #require(closed.wait())
        #expect(throws: ReactorError.connectionClosed) { try connection.write(tracker.slice([1, 2, 3], tag: 1)) }
        var m = OutboundMessage()
        m.append(tracker.slice([4], tag: 2))
        #expect(throws: ReactorError.connectionClosed) { try connection.write(&m) }
        #expect(tracker.released(1) == 1 && tracker.released(2) == 1)
    }

    /// gh-115514: writes queued just before close() were dropped. Here close() sends them first, from any thread.
    @Test func writesQueuedJustBeforeCloseAreSent() throws {
        let (pool, peer, connection) = try connectedPair()
        defer { pool.shutdown() }
        var expected: [UInt8] = []
        for i in 0..<1000 {
            let chunk = [UInt8](repeating: UInt8(i & 0xFF), count: 100)
            expected += chunk
            try connection.write(Slice(chunk))  // from the test thread, not the loop
        }
        connection.close()
        #expect(peer.readAll() == expected)
    }

    /// gh-135862: partial writes counted in elements, not bytes: wider elements behind the bytes, short writes forced.
    @Test func partialWritesOfWideElementsAreCountedInBytes() throws {
        let words = (0..<4096).map { UInt32($0) &* 0x0101_0101 }
        let owner = ArrayOwner(words)
        let expected = Array(owner.bytes)
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onOpen = { c in
                FaultInjection.inject(.shortCount(3), on: .send, fd: c.fd, atCall: 1, times: 20)
                try! c.write(Slice(unsafeBytes: owner.bytes, owner: owner))
                c.close()
            }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(peer.readAll() == expected)
        #expect(pool.counters()[0].write.partialWrites >= 20)
    }

    /// gh-155888: an empty chunk in a gathered write stalled close forever.
    @Test func anEmptyChunkDoesNotStallClose() throws {
        let closed = Box<ReactorError?>()
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onOpen = { c in
                var m = OutboundMessage()
                m.append(Slice([1, 2]))
                m.append(Slice([]))
                m.append(Slice([3]))
                try! c.write(&m)
                try! c.write(Slice([]))
                c.close()
            }
            h.onClose = { _, e in closed.set(e) }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(peer.readAll() == [1, 2, 3])
        #expect(closed.wait() == .some(nil))
    }

    /// An empty slice is never queued, but its observer still hears it released exactly once (a caller waiting for
    /// the release of every slice it wrote must not wait forever for an empty one).
    @Test func anEmptySliceIsReleasedAtOnceAndOnlyOnce() throws {
        let tracker = LifetimeTracker()
        let chain = WriteChain()
        var m = OutboundMessage()
        m.append(tracker.slice([], tag: 1))
        m.append(tracker.slice([9], tag: 2))
        #expect(tracker.released(1) == 1 && tracker.writtenCount == 1)  // released on append, before any flush
        #expect(chain.append(&m) == .becameNonEmpty)
        #expect(chain.append(tracker.slice([], tag: 3)) == .queued)
        #expect(tracker.released(3) == 1)
        _ = chain.failAll(.connectionClosed)
        #expect(tracker.released(2) == 1 && tracker.error(2) == .connectionClosed)
        #expect(tracker.releasedTwice.isEmpty && tracker.releasedCount == 3)
    }

    /// gh-146507: a chunk was removed from the queue before the syscall result was known, and lost on EAGAIN.
    @Test func nothingIsLostWhenTheKernelSaysEAGAIN() throws {
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onOpen = { c in
                FaultInjection.inject(.errno(EAGAIN), on: .sendmsg, fd: c.fd, atCall: 1, times: 3)
                FaultInjection.inject(.errno(EAGAIN), on: .send, fd: c.fd, atCall: 1, times: 3)
                var m = OutboundMessage()
                for i in 0..<10 { m.append(Slice([UInt8](repeating: UInt8(i), count: 10))) }
                try! c.write(&m)
                c.close()
            }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(peer.readAll() == (0..<10).flatMap { [UInt8](repeating: UInt8($0), count: 10) })
        #expect(pool.counters()[0].write.wouldBlocks >= 1)
    }

    /// gh-156512: closing from the resume-writing callback ran the connection-lost callback twice.
    @Test func closingFromTheWritabilityCallbackClosesOnce() throws {
        let closes = Atomic<Int>(0)
        let done = Signal()
        let (pool, address) = try makeServer(configure: { $0.highWatermark = 16 * 1024; $0.lowWatermark = 8 * 1024 }) { _ in
            let h = ClosureHandler()
            h.onOpen = { c in
                for _ in 0..<64 { try! c.write(Slice([UInt8](repeating: 5, count: 16 * 1024))) }
            }
            h.onWritability = { c, writable in
                if writable {
                    c.close()
                    c.abort()
                    c.close()
                }
            }
            h.onClose = { _, _ in
                closes.wrappingAdd(1, ordering: .relaxed)
                done.fire()
            }
            return h
        }
        let peer = try RawPeer(connectingTo: address)
        _ = peer.readAll()
        #expect(done.wait())
        pool.shutdown()  // everything the loop had to do is done once it has stopped
        #expect(closes.load(ordering: .relaxed) == 1)
    }
}
