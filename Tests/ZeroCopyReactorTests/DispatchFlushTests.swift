// Replies flushed within their connection's dispatch (`Connection.flushSoon`): what a handler writes in answer to
// what it read leaves before the loop dispatches the next connection's event, not after every event of the
// iteration. Beside it, the hostile peers of that path: one that never reads and then resets while its replies are
// being flushed, and one that half-closes right after its request. Exact bytes, releases and errors; no sleeps
// (the loop is held by a task of its own while the peers send, so their requests land in one epoll wait).
import Dispatch
import Glibc
import Synchronization
import Testing
@testable import ZeroCopyReactor

@Suite struct DispatchFlushTests {
    /// What the handler saw, touched on the one loop's thread only (read back with `submitAndWait`).
    final class Dispatches: @unchecked Sendable {
        var previous: Connection?
        var previousIteration: UInt64 = 0
        /// Reads dispatched in the same loop iteration as the read before them, on another connection.
        var sameIterationPairs = 0
        /// Bytes the previous connection still had queued when the next one's read was dispatched.
        var pendingSeen = 0
    }

    /// Holds the loop in a task of its own until `release`: whatever peers send meanwhile is reported by one wait.
    static func holdLoop(_ loop: EventLoop) -> DispatchSemaphore {
        let release = DispatchSemaphore(value: 0)
        let held = DispatchSemaphore(value: 0)
        _ = loop.execute {
            held.signal()
            release.wait()
        }
        held.wait()
        return release
    }

    /// A high watermark of `high` (low at half) and a small socket send buffer: replies back up soon.
    static func smallBuffers(high: Int, sendBuffer: Int32) -> (inout ReactorConfiguration) -> Void {
        return {
            $0.highWatermark = high
            $0.lowWatermark = high / 2
            $0.socketSendBuffer = sendBuffer
        }
    }

    @Test func aReplyLeavesBeforeTheNextConnectionIsDispatched() throws {
        let record = Dispatches()
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onRead = { c, bytes in
                if let p = record.previous, p !== c, c.loop.iterationStart == record.previousIteration {
                    record.sameIterationPairs += 1
                    record.pendingSeen += p.pendingBytes
                }
                try? c.write(bytes.retainedSlice())
                record.previous = c
                record.previousIteration = c.loop.iterationStart
            }
            return h
        }
        defer { pool.shutdown() }
        let loop = pool.loops[0]
        var random = TestRandom(seed: 11)
        let peers = try (0..<64).map { _ in try RawPeer(connectingTo: address) }
        for _ in 0..<3 {
            let payloads = peers.map { _ in random.bytes(1024) }
            let release = Self.holdLoop(loop)
            for (p, d) in zip(peers, payloads) { p.send(d) }
            release.signal()
            for (p, d) in zip(peers, payloads) { #expect(p.read(exactly: d.count) == d) }
        }
        let (pairs, pending) = loop.submitAndWait {
            defer { record.previous = nil }
            return (record.sameIterationPairs, record.pendingSeen)
        } ?? (0, -1)
        // 3 x 64 requests reported by three waits: most reads follow another in the same iteration. Behind the
        // ready stack, each of those found the previous reply (1 KiB) still queued.
        #expect(pairs >= 100)
        #expect(pending == 0)
    }

    @Test func aPeerThatNeverReadsThenResetsMidFlushReleasesEverySliceOnce() throws {
        // Each read is answered with a tracked copy four times its size, so the never-reading peer's replies back
        // up at once; the handler pauses reading at the high watermark. A second peer does ping-pong on the same
        // loop throughout and must get exact bytes. Then the first resets while replies are queued.
        let tracker = LifetimeTracker()
        let tags = Atomic<UInt64>(0)
        let paused = Atomic<Bool>(false)
        let closed = Box<ReactorError?>()
        let high = 256 * 1024
        let (pool, address) = try makeServer(configure: Self.smallBuffers(high: high, sendBuffer: 64 * 1024)) { _ in
            let h = ClosureHandler()
            h.onRead = { c, bytes in
                // Each byte four times: the same stream however TCP splits the requests.
                let reply = bytes.bytes.flatMap { [$0, $0, $0, $0] }
                try? c.write(tracker.slice(reply, tag: tags.wrappingAdd(1, ordering: .relaxed).oldValue))
                if !c.isWritable {
                    c.pauseReading()
                    paused.store(true, ordering: .relaxed)
                }
            }
            h.onWritability = { c, writable in if writable { c.resumeReading() } }
            h.onClose = { _, e in if let e { closed.set(e) } }
            return h
        }
        defer { pool.shutdown() }
        // Sends without blocking (a reset must not wait for a send in flight on another thread) until the server
        // has paused. Each wait is for writability, and short, so that a pause that comes while this waits (the
        // socket then never turns writable) is seen; 20 s in all.
        let hostile = try RawPeer(connectingTo: address, receiveBuffer: 16 * 1024)
        let chunk = [UInt8](repeating: 0x42, count: 16 * 1024)
        var sent = 0, waits = 0
        while !paused.load(ordering: .relaxed) && sent < 64 << 20 && waits < 200 {
            var pfd = pollfd(fd: hostile.fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&pfd, 1, 100) == 1 else {
                waits += 1
                continue
            }
            let n = chunk.withUnsafeBytes { send(hostile.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            if n > 0 { sent += n }
        }
        let didPause = paused.load(ordering: .relaxed)
        #expect(didPause)
        let pinger = try RawPeer(connectingTo: address)
        var random = TestRandom(seed: 5)
        for _ in 0..<50 {
            let d = random.bytes(100)
            pinger.send(d)
            #expect(pinger.read(exactly: 400) == d.flatMap { [$0, $0, $0, $0] })
        }
        hostile.reset()
        let error = closed.wait() ?? nil
        #expect(error?.errno == ECONNRESET || error?.errno == EPIPE)
        pinger.shutdownWrite()
        let end = pinger.readToEnd()
        #expect(end.bytes == 0 && end.end == 0)
        // Every tracked reply of both peers is released exactly once, the cut ones with the error.
        let made = Int(tags.load(ordering: .relaxed))
        let all = pool.loops[0].submitAndWait { true } ?? false
        #expect(all)
        #expect(tracker.releasedCount == made)
        #expect(tracker.releasedTwice.isEmpty)
        #expect(tracker.errorCount > 0)
    }

    @Test func aPeerThatHalfClosesAfterItsRequestGetsTheWholeReplyThenAFin() throws {
        // The reply is written during the read, the end of input arrives in the same dispatch or the next, and the
        // default reaction (closeAfterOutput) must still send every byte before the FIN.
        let reply = [UInt8](repeating: 0x61, count: 3 << 20)
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onRead = { c, _ in try? c.write(Slice(reply)) }
            h.onEnd = { c in c.closeAfterOutput() }
            return h
        }
        defer { pool.shutdown() }
        let release = Self.holdLoop(pool.loops[0])
        let peers = try (0..<8).map { _ in try RawPeer(connectingTo: address) }
        for p in peers {
            p.send([1])
            p.shutdownWrite()
        }
        release.signal()
        for p in peers {
            let (bytes, end) = p.readToEnd()
            #expect(bytes == reply.count)
            #expect(end == 0)
        }
    }

    // The read side of the same change (ReadBufferPool.nextRegion): once every slice of the current read buffer is
    // released, the next read starts it over, rather than going on into fresh memory until the buffer rotates.

    @Test func aReadAfterItsEchoWasSentReusesTheStartOfTheBuffer() throws {
        let addresses = Locked<[UInt]>([])
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onRead = { c, bytes in
                addresses.withLock { $0.append(UInt(bitPattern: bytes.bytes.baseAddress)) }
                try? c.write(bytes.retainedSlice())
            }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        Self.echoRequests(peer, count: 200, sizes: 1...700, seed: 3)
        let seen = addresses.withLock { $0 }
        // Each request is read after the reply to the one before it was sent and released: one address for all.
        // Before, each read went on past the bytes the last one kept, and only a rotation came back to the start.
        #expect(seen.count >= 200)
        #expect(Set(seen).count == 1)
    }

    @Test func bytesStillHeldAreNeverOverwrittenByTheStartOver() throws {
        // A hoarder keeps every slice it reads (a slow consumer, a proxy that has not forwarded yet); a trickler on
        // the same loop sends one byte at a time and is echoed. The buffer must not start over under the hoarder's
        // slices: at the end they still hold exactly what the hoarder sent.
        let kept = Locked<[Slice]>([])
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onRead = { c, bytes in
                if bytes.bytes.first == 0xEE {
                    kept.withLock { $0.append(bytes.retainedSlice()) }
                } else {
                    try? c.write(bytes.retainedSlice())
                }
            }
            return h
        }
        defer { pool.shutdown() }
        let hoarder = try RawPeer(connectingTo: address)
        let trickler = try RawPeer(connectingTo: address)
        var random = TestRandom(seed: 9)
        var hoarded: [[UInt8]] = []
        for round in 0..<50 {
            var d = random.bytes(300)
            d[0] = 0xEE
            hoarded.append(d)
            hoarder.send(d)
            // Until the loop has read it (each read of it is one kept slice starting with 0xEE, 300 bytes in all).
            var waited = 0
            while kept.withLock({ $0.reduce(0) { $0 + $1.count } }) < 300 * (round + 1) && waited < 20_000 {
                let b = UInt8(1 + round % 200)
                trickler.send([b])
                #expect(trickler.read(exactly: 1) == [b])
                waited += 1
            }
        }
        let held = kept.withLock { list in list.flatMap { Array($0.bytes) } }
        #expect(held == hoarded.flatMap { $0 })
        kept.withLock { $0.removeAll() }
    }

    // The reply held outside the chain's list (`WriteChain.holdFront`): a reply written during its dispatch to an
    // idle chain takes no node and no locked step of the list, and when the kernel takes only part of it, refuses
    // it, or fails, it moves into the list or is failed with the rest, released exactly once.

    /// Writes back what it reads as a retained slice that `tracker` follows, each with a tag of its own.
    final class TrackedEcho: @unchecked Sendable {
        let tracker: LifetimeTracker
        private let tags = Atomic<UInt64>(0)
        init(_ tracker: LifetimeTracker) { self.tracker = tracker }
        func reply(_ c: Connection, _ bytes: InboundBytes) {
            var s = bytes.retainedSlice()
            s.observer = tracker
            s.tag = tags.wrappingAdd(1, ordering: .relaxed).oldValue
            try? c.write(s)
        }
    }

    /// `count` requests of random sizes, one at a time, each echoed byte for byte.
    static func echoRequests(_ peer: RawPeer, count: Int, sizes: ClosedRange<Int>, seed: UInt64) {
        var random = TestRandom(seed: seed)
        for _ in 0..<count {
            let d = random.bytes(random.int(sizes))
            peer.send(d)
            #expect(peer.read(exactly: d.count) == d)
        }
    }

    /// Nodes the loop's pool hands out while `peer` makes 199 more echoed requests.
    static func nodesTakenBy199Requests(on loop: EventLoop, peer: RawPeer, seed: UInt64) -> Int {
        let before = loop.submitAndWait { NodePool.current.takenNodes } ?? -1
        echoRequests(peer, count: 199, sizes: 1...900, seed: seed)
        return (loop.submitAndWait { NodePool.current.takenNodes } ?? -1) - before
    }

    @Test func aReplyWrittenInItsDispatchTakesNoChainNode() throws {
        let tracker = LifetimeTracker(expecting: 200)
        let echo = TrackedEcho(tracker)
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onRead = echo.reply
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        peer.send([0])
        #expect(peer.read(exactly: 1) == [0])
        // Through the list, each of the 199 replies took a node from the loop's pool.
        #expect(Self.nodesTakenBy199Requests(on: pool.loops[0], peer: peer, seed: 21) == 0)
        #expect(tracker.waitAll() && tracker.writtenCount == 200 && tracker.releasedTwice.isEmpty && tracker.errorCount == 0)
        #expect(pool.counters()[0].write.slicesWritten == 200)
    }

    @Test func readBytesWrittenBackTakeNoChainNodeAndNoSlice() throws {
        // `write(_: InboundBytes)`, the echo server's and a proxy's write: held as the buffer and the bytes.
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onRead = { c, bytes in try? c.write(bytes) }
            return h
        }
        defer { pool.shutdown() }
        let loop = pool.loops[0]
        let peer = try RawPeer(connectingTo: address)
        peer.send([0])
        #expect(peer.read(exactly: 1) == [0])
        #expect(Self.nodesTakenBy199Requests(on: loop, peer: peer, seed: 22) == 0)
        let counters = pool.counters()[0]
        #expect(counters.write.slicesWritten == 200 && counters.write.sendCalls == 200)
        // Released: nothing is held by slices once the replies are sent (the buffer starts over at each read).
        #expect(loop.submitAndWait { loop.readBuffers.memory.heldBuffers.load(ordering: .relaxed) } == 0)
    }

    @Test func aHeldReplyCutShortByTheKernelArrivesWhole() throws {
        // Each of the first five sends of the connection takes at most 3 bytes: each held reply goes out in part,
        // and the rest from the chain's list once the socket is writable again, in order with the replies after it.
        let tracker = LifetimeTracker()
        let echo = TrackedEcho(tracker)
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onOpen = { c in FaultInjection.inject(.shortCount(3), on: .send, fd: c.fd, atCall: 1, times: 5) }
            h.onRead = echo.reply
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        Self.echoRequests(peer, count: 20, sizes: 10...500, seed: 8)
        let counters = pool.counters()[0].write
        #expect(counters.partialWrites >= 5)
        #expect(counters.slicesWritten >= 20)
        #expect(tracker.releasedCount == tracker.writtenCount && tracker.releasedTwice.isEmpty && tracker.errorCount == 0)
    }

    @Test func aResetOnTheHeldRepliesSendReleasesItOnceWithTheError() throws {
        let tracker = LifetimeTracker(expecting: 1)
        let closed = Box<ReactorError?>()
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onOpen = { c in FaultInjection.inject(.errno(ECONNRESET), on: .send, fd: c.fd) }
            h.onRead = { c, bytes in
                var s = bytes.retainedSlice()
                s.observer = tracker
                s.tag = 1
                try? c.write(s)
            }
            h.onClose = { _, e in closed.set(e) }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        peer.send([1, 2, 3])
        #expect((closed.wait() ?? nil) == .system(SystemError(errno: ECONNRESET, call: "send")))
        #expect(tracker.waitAll() && tracker.released(1) == 1 && tracker.error(1) == .system(SystemError(errno: ECONNRESET, call: "send")))
        #expect(tracker.writtenCount == 0)
        #expect(peer.readAll().isEmpty)
    }

    /// A server (32 KiB socket send buffers, high watermark `high`) that answers each read with `reply`, pauses
    /// reading while the connection is not writable (calling `paused` then) and resumes once it is again.
    static func pausingServer(
        high: Int, reply: @escaping @Sendable (Connection, InboundBytes) -> Void,
        paused: @escaping @Sendable (Connection) -> Void
    ) throws -> (ReactorPool, SocketAddress) {
        try makeServer(configure: smallBuffers(high: high, sendBuffer: 32 * 1024)) { _ in
            let h = ClosureHandler()
            h.onRead = { c, bytes in
                reply(c, bytes)
                if !c.isWritable {
                    c.pauseReading()
                    paused(c)
                }
            }
            h.onWritability = { c, writable in if writable { c.resumeReading() } }
            return h
        }
    }

    /// A peer with a 16 KiB receive buffer that sends `bytes` random bytes in 1 KiB requests from a thread of its
    /// own and reads nothing, until the server has paused. The sender blocks once the server pauses; only the
    /// caller's reads, which start after this returns, let it go on.
    static func floodUntilPaused(
        _ address: SocketAddress, _ paused: Signal, bytes: Int, seed: UInt64
    ) throws -> (RawPeer, [UInt8]) {
        let peer = try RawPeer(connectingTo: address, receiveBuffer: 16 * 1024)
        var random = TestRandom(seed: seed)
        let data = random.bytes(bytes)
        runThread {
            for i in stride(from: 0, to: data.count, by: 1024) { peer.send(Array(data[i..<i + 1024])) }
        }
        #expect(paused.wait(seconds: 20))
        return (peer, data)
    }

    @Test func aPeerThatNeverReadsGetsEveryHeldReplyInOrderOnceItDoes() throws {
        // The peer sends 4 MiB in 1 KiB requests and reads nothing: the echoes fill its receive buffer and the
        // server's send buffer, held replies meet EAGAIN and partial sends and move into the list, the handler
        // pauses reading at the high watermark. Then the peer reads: every byte, in order, each reply released once.
        let tracker = LifetimeTracker()
        let echo = TrackedEcho(tracker)
        let paused = Signal()
        let high = 128 * 1024
        let (pool, address) = try Self.pausingServer(high: high, reply: echo.reply) { _ in paused.fire() }
        defer { pool.shutdown() }
        let (peer, data) = try Self.floodUntilPaused(address, paused, bytes: 4 << 20, seed: 13)
        #expect(peer.read(exactly: data.count) == data)
        let counters = pool.counters()[0].write
        #expect(counters.wouldBlocks + counters.partialWrites > 0)
        #expect(tracker.releasedCount == tracker.writtenCount && tracker.releasedTwice.isEmpty && tracker.errorCount == 0)
        #expect(pool.loops[0].submitAndWait { tracker.releasedCount } == tracker.writtenCount)
    }

    // Read bytes written back with `write(_: InboundBytes)` are lent to the chain, not taken: no reference to the
    // buffer and no charge, unless the reply outlives its dispatch or the loop reads on into the same memory. Then
    // it is owned first, or the next read would overwrite the reply before it is sent.

    /// The first index where `a` and `b` differ (nil: none): a failure names a byte, not two megabytes.
    static func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
        zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset
    }

    @Test func repliesLentByAPeerThatNeverReadsAreKeptWholeUntilItDoes() throws {
        // The peer sends 2 MiB in 1 KiB requests and reads nothing: each lent reply meets EAGAIN or a partial send
        // and moves into the list, and the reads go on into the same buffer. Then the peer reads every byte, in order.
        let paused = Signal()
        let heldWhilePaused = Box<Int>()
        let (pool, address) = try Self.pausingServer(high: 128 * 1024, reply: { c, bytes in try? c.write(bytes) }) { c in
            heldWhilePaused.set(c.readBytesHeld.load(ordering: .relaxed))
            paused.fire()
        }
        defer { pool.shutdown() }
        let (peer, data) = try Self.floodUntilPaused(address, paused, bytes: 2 << 20, seed: 31)
        // The replies queued behind the full socket are owned: charged to the connection that read them.
        #expect((heldWhilePaused.wait() ?? 0) >= 64 * 1024)
        let got = peer.read(exactly: data.count)
        #expect(got.count == data.count && Self.firstDifference(got, data) == nil)
        let counters = pool.counters()[0]
        #expect(counters.write.wouldBlocks + counters.write.partialWrites > 0)
        // Every reply released: no buffer is held once all of it was sent.
        #expect(pool.loops[0].submitAndWait { pool.loops[0].readBuffers.memory.heldBuffers.load(ordering: .relaxed) } == 0)
    }

    @Test func aReadThatFillsItsRegionOwnsTheLentReplyBeforeReadingOn() throws {
        // More than the 64 KiB buffer waits in the socket before the loop reads (it is held meanwhile): the first
        // read fills the whole buffer, its echo is lent, and the loop reads on at once. That read must go past the
        // lent bytes, into another buffer.
        let reads = Locked<[Int]>([])
        let server = Box<Connection>()
        let (pool, address) = try makeServer(configure: {
            $0.highWatermark = 1 << 20
            $0.lowWatermark = 1 << 19
        }) { _ in
            let h = ClosureHandler()
            h.onRead = { c, bytes in
                reads.withLock { $0.append(bytes.count) }
                try? c.write(bytes)
                server.set(c)
            }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        peer.send([7])
        #expect(peer.read(exactly: 1) == [7])
        let fd = try #require(server.wait()).fd
        var random = TestRandom(seed: 32)
        let data = random.bytes(192 * 1024)
        let release = Self.holdLoop(pool.loops[0])
        runThread { peer.send(data) }
        // Until more than one buffer's worth is queued on the server's socket (the loop cannot read it meanwhile).
        var queued: Int32 = 0
        for _ in 0..<20_000 where queued <= 64 * 1024 {
            _ = ioctl(fd, UInt(FIONREAD), &queued)
            if queued <= 64 * 1024 { usleep(1000) }
        }
        release.signal()
        #expect(queued > 64 * 1024)
        let got = peer.read(exactly: data.count)
        #expect(got.count == data.count && Self.firstDifference(got, data) == nil)
        // At least one read took a whole buffer's worth, so the loop did read on within one dispatch.
        #expect(reads.withLock { $0.contains(64 * 1024) })
    }

    /// Weak references to the connections a test saw, read back on the loop.
    final class WeakConnections: @unchecked Sendable {
        struct Entry { weak var connection: Connection? }
        var entries: [Entry] = []
        var retiringSeen: [Int] = []
    }

    @Test func connectionsTornDownByTheirOwnEventOutliveItAndNoLonger() throws {
        // The loop dispatches a connection's events without taking a reference to it (the slot holds it). A peer
        // whose request makes the handler abort tears the connection down inside that dispatch: the loop keeps it
        // until the batch of events ends, then lets go. 40 churning peers: each gets its reset, and afterwards no
        // connection object is left.
        let seen = WeakConnections()
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            h.onRead = { c, _ in
                c.abort()
                // Torn down now: only the loop's batch keeps the object (the handler holds no reference).
                seen.entries.append(.init(connection: c))
                seen.retiringSeen.append(c.loop.retiringCount)
            }
            return h
        }
        defer { pool.shutdown() }
        let loop = pool.loops[0]
        for i in 0..<40 {
            let peer = try RawPeer(connectingTo: address)
            peer.send([UInt8(i)])
            #expect(peer.readAll().isEmpty)  // the reset (or EOF after it), never an echo
        }
        let (alive, retiring, counts) = loop.submitAndWait {
            (seen.entries.filter { $0.connection != nil }.count, loop.retiringCount, seen.retiringSeen)
        } ?? (-1, -1, [])
        #expect(counts.count == 40 && counts.allSatisfy { $0 >= 1 })
        #expect(retiring == 0)
        #expect(alive == 0)
        #expect(pool.counters()[0].connectionsOpen == 0)
    }
}
