// The reactor end to end over loopback, against peers written in the test with plain sockets:
// exact bytes, releases, errors, backpressure, closing, loops, timers. No sleeps: every wait is on an event.
import Glibc
import Synchronization
import Testing
@testable import ZeroCopyReactor

@Suite struct ConnectionTests {
    @Test func echoReturnsExactBytesToAPlainSocketPeer() throws {
        let (pool, address) = try makeServer(loops: 2) { _ in EchoHandler() }
        defer { pool.shutdown() }
        var random = TestRandom(seed: 1)
        let data = random.bytes(1 << 20)
        let peer = try RawPeer(connectingTo: address)
        let reader = Box<[UInt8]>()
        runThread { reader.set(peer.read(exactly: data.count)) }
        peer.send(data)
        #expect(reader.wait() == data)
        let total = pool.counters().reduce(0) { $0 + $1.bytesCopied }
        #expect(total == 0)
    }

    @Test func exactBytesWhenTheKernelTakesALittleAtATime() throws {
        // Small SO_SNDBUF on the server side, a small receive buffer and small reads on the peer, random slice
        // sizes, and far more than 1024 slices pending at once. Slices alternate between two copies of the payload,
        // so no slice lies right after the one before it and each needs an iovec of its own.
        var random = TestRandom(seed: 7)
        let payload = random.bytes(300_000)
        let twin = payload.map { $0 }
        var cuts: [Range<Int>] = []
        var at = 0
        while at < payload.count {
            let n = min(random.int(1...180), payload.count - at)
            cuts.append(at..<at + n)
            at += n
        }
        #expect(cuts.count > 3000)
        let ranges = cuts
        let tracker = LifetimeTracker(expecting: cuts.count)
        let server = Box<Connection>()
        let (pool, address) = try makeServer(configure: {
            $0.socketSendBuffer = 4096
            $0.highWatermark = 1 << 30
            $0.lowWatermark = 1 << 29
        }) { c in
            let h = ClosureHandler()
            h.onOpen = { c in
                for (i, r) in ranges.enumerated() {
                    var s = Slice(i % 2 == 0 ? payload[r] : twin[r])
                    s.tag = UInt64(i)
                    s.observer = tracker
                    try! c.write(s)
                }
                #expect(c.pendingBytes == payload.count)
                c.close()
                server.set(c)
            }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address, receiveBuffer: 4096)
        let received = peer.readAll(chunk: 997)
        #expect(received == payload)
        #expect(tracker.waitAll())
        #expect(tracker.releasedTwice.isEmpty && tracker.errorCount == 0)
        let counters = pool.counters()[0]
        #expect(counters.write.partialWrites > 0)
        #expect(counters.write.slicesWritten == cuts.count)
        #expect(counters.write.bytesWritten == payload.count)
        #expect(counters.write.sendmsgCalls > 0)
        #expect(counters.write.coalescedSlices == 0)
    }

    @Test func aPeerResetDuringALargeWriteReachesTheHandlerWithoutSIGPIPE() throws {
        let big = [UInt8](repeating: 0x5A, count: 64 << 20)
        let tracker = LifetimeTracker(expecting: 64)
        let closed = Box<ReactorError?>()
        let opened = Signal()
        let (pool, address) = try makeServer(configure: { $0.highWatermark = 1 << 30; $0.lowWatermark = 1 }) { c in
            let h = ClosureHandler()
            h.onOpen = { c in
                for i in 0..<64 { try! c.write(tracker.slice(Array(big[(i << 20)..<((i + 1) << 20)]), tag: UInt64(i))) }
                opened.fire()
            }
            h.onClose = { _, e in closed.set(e) }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(opened.wait())
        _ = peer.read(exactly: 100_000)
        peer.reset()
        let error = closed.wait() ?? nil
        #expect(error?.errno == ECONNRESET || error?.errno == EPIPE)
        #expect(tracker.waitAll())
        #expect(tracker.releasedTwice.isEmpty)
        #expect(tracker.errorCount > 0)
    }

    @Test func releasedExactlyOnceOnAbortAndOnGracefulCloseWithDataPending() throws {
        for abort in [true, false] {
            let tracker = LifetimeTracker(expecting: 201)  // 200 queued + 1 refused after the close
            let closed = Box<ReactorError?>()
            let (pool, address) = try makeServer(configure: { $0.highWatermark = 1 << 30; $0.lowWatermark = 1 }) { c in
                let h = ClosureHandler()
                h.onOpen = { c in
                    let block = [UInt8](repeating: 1, count: 64 * 1024)
                    for i in 0..<200 { try! c.write(tracker.slice(block, tag: UInt64(i))) }
                    if abort { c.abort() } else { c.close() }
                    // After close or abort a write is refused and released at once.
                    #expect(throws: ReactorError.connectionClosed) { try c.write(tracker.slice([1], tag: 999)) }
                }
                h.onClose = { _, e in closed.set(e) }
                return h
            }
            let peer = try RawPeer(connectingTo: address)
            let received = peer.readAll()
            #expect((closed.wait() ?? nil) == (abort ? .aborted : nil))
            #expect(tracker.waitAll())
            #expect(tracker.released(999) == 1)
            #expect(tracker.releasedTwice.isEmpty)
            if abort {
                #expect(received.count < 200 * 64 * 1024)
                #expect(tracker.error(199) == .aborted)
            } else {
                #expect(received.count == 200 * 64 * 1024)
                #expect(tracker.errorCount == 1)  // only the refused write
            }
            pool.shutdown()
        }
    }

    @Test func aReaderThatStopsReadingPausesTheWriterAtTheHighWatermark() throws {
        let high = 64 * 1024, low = 32 * 1024, sliceSize = 4096, total = 8 << 20
        let maxPending = Atomic<Int>(0)
        let events = Locked<[Bool]>([])
        let paused = Signal()
        let (pool, address) = try makeServer(configure: {
            $0.highWatermark = high
            $0.lowWatermark = low
            $0.socketSendBuffer = 16384
        }) { c in
            let block = [UInt8](repeating: 7, count: sliceSize)
            final class Writer: @unchecked Sendable { var sent = 0 }
            let writer = Writer()
            let pump: (Connection) -> Void = { c in
                while writer.sent < total && c.isWritable {
                    try! c.write(Slice(block))
                    writer.sent += sliceSize
                    let p = c.pendingBytes
                    if p > maxPending.load(ordering: .relaxed) { maxPending.store(p, ordering: .relaxed) }
                }
                if writer.sent == total { c.close() }
            }
            let h = ClosureHandler()
            h.onOpen = { c in
                pump(c)
                if !c.isWritable { paused.fire() }
            }
            h.onWritability = { c, writable in
                events.withLock { $0.append(writable) }
                if writable {
                    #expect(c.pendingBytes <= low)
                    pump(c)
                }
            }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(paused.wait())
        let received = peer.readAll()
        #expect(received.count == total)
        // The writer stopped at the high watermark: pending never passed it by more than one slice.
        #expect(maxPending.load(ordering: .relaxed) < high + sliceSize)
        let seen = events.withLock { $0 }
        #expect(seen.first == false)
        #expect(seen.contains(true))
    }

    /// A handler that writes in connectionOpened and again from writabilityChanged must not queue its connection on
    /// the loop's ready stack twice (that dropped other connections from the stack and stalled them).
    @Test func manyBlastConnectionsAtOnceAllReceiveEverything() throws {
        let total = 1 << 20
        let expected = (0..<total).map { UInt8($0 % 251) }
        let server = BuiltinServer(mode: .blast, blastBytes: total, sliceBytes: 64 * 1024)
        let (pool, address) = try makeServer(loops: 2) { server.handler(for: $0) }
        defer { pool.shutdown() }
        let peers = try (0..<24).map { _ in try RawPeer(connectingTo: address) }
        let done = Locked<[Int]>([])
        let all = Signal()
        for peer in peers {
            runThread {
                let got = peer.readAll()
                let ok = got == expected
                let count = done.withLock { d -> Int in
                    d.append(ok ? got.count : -got.count)
                    return d.count
                }
                if count == peers.count { all.fire() }
            }
        }
        #expect(all.wait(seconds: 60))
        #expect(done.withLock { $0 } == [Int](repeating: total, count: peers.count))
    }

    @Test func withTwoLoopsConnectionsAreAcceptedByBoth() throws {
        let (pool, address) = try makeServer(loops: 2) { _ in SinkHandler() }
        defer { pool.shutdown() }
        var peers: [RawPeer] = []
        var perLoop = [0, 0]
        // The kernel spreads by a hash of the 4-tuple: keep connecting until both loops have one.
        while peers.count < 200 && (perLoop[0] == 0 || perLoop[1] == 0) {
            peers.append(try RawPeer(connectingTo: address))
            perLoop = pool.waitForAccepted(peers.count)
        }
        #expect(perLoop[0] > 0 && perLoop[1] > 0)
    }

    @Test func anInjectedResetOnSendReachesTheHandlerAndReleasesEverything() throws {
        let tracker = LifetimeTracker(expecting: 3)
        let closed = Box<ReactorError?>()
        let (pool, address) = try makeServer { c in
            let h = ClosureHandler()
            h.onOpen = { c in
                FaultInjection.inject(.errno(ECONNRESET), on: .sendmsg, fd: c.fd)
                var m = OutboundMessage()
                for i in 0..<3 { m.append(tracker.slice([UInt8(i), 1, 2], tag: UInt64(i))) }
                try! c.write(&m)
            }
            h.onClose = { _, e in closed.set(e) }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect((closed.wait() ?? nil) == .system(SystemError(errno: ECONNRESET, call: "sendmsg")))
        #expect(tracker.waitAll() && tracker.releasedTwice.isEmpty && tracker.errorCount == 3)
        #expect(peer.readAll().isEmpty)
    }

    @Test func injectedShortCountsStillDeliverExactBytes() throws {
        var random = TestRandom(seed: 3)
        let data = random.bytes(50_000)
        let (pool, address) = try makeServer { c in
            let h = ClosureHandler()
            h.onOpen = { c in
                FaultInjection.inject(.shortCount(7), on: .sendmsg, fd: c.fd, atCall: 1, times: 5)
                FaultInjection.inject(.shortCount(3), on: .send, fd: c.fd, atCall: 1, times: 5)
                var m = OutboundMessage()
                for i in stride(from: 0, to: data.count, by: 1000) { m.append(Slice(data[i..<min(i + 1000, data.count)])) }
                try! c.write(&m)
                c.close()
            }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(peer.readAll() == data)
        #expect(pool.counters()[0].write.partialWrites >= 5)
    }

    @Test func aRefusedConnectIsReportedToTheHandler() throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        defer { pool.shutdown() }
        let listener = try RawListener()
        let address = listener.address
        listener.close()  // nobody listens there now
        let closed = Box<ReactorError?>()
        let h = ClosureHandler()
        h.onClose = { c, e in
            #expect(!c.wasEstablished)
            closed.set(e)
        }
        let handler = h
        try pool.connect(to: address) { _ in handler }
        #expect((closed.wait() ?? nil)?.errno == ECONNREFUSED)
    }

    /// A peer that sends and closes, answered by a close: the connection ends with its FIN and no syscall it does
    /// not need (no shutdown(SHUT_WR) after the peer's end of input, no epoll_ctl to stop reading before the close).
    /// Faults armed on the connection's descriptor count the calls: any shutdown, or a second epoll_ctl (the
    /// first is the deregistration), would hit one.
    @Test func aClosedPeerIsAnsweredWithoutSpareSyscalls() throws {
        let result = Box<(shutdowns: Int, extraEpollCtls: Int, error: ReactorError?)>()
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            var faults: (Int, Int) = (0, 0)
            h.onOpen = { c in
                faults = (
                    FaultInjection.inject(.errno(EIO), on: .shutdown, fd: c.fd),
                    FaultInjection.inject(.errno(EIO), on: .epollCtl, fd: c.fd, atCall: 2)
                )
            }
            h.onRead = { c, bytes in try? c.write(bytes.retainedSlice()) }
            h.onClose = { _, error in
                let counts = (FaultInjection.hits(faults.0), FaultInjection.hits(faults.1))
                FaultInjection.disarm(faults.0)
                FaultInjection.disarm(faults.1)
                result.set((counts.0, counts.1, error))
            }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        peer.send([42])
        #expect(peer.read(exactly: 1) == [42])
        peer.shutdownWrite()
        #expect(peer.readAll().isEmpty)  // the FIN, after the echo
        let r = try #require(result.wait())
        #expect(r.shutdowns == 0 && r.extraEpollCtls == 0)
        #expect(r.error == nil)
    }

    @Test func halfCloseSendsEverythingThenKeepsReading() throws {
        let readAfterShutdown = Box<[UInt8]>()
        let closed = Box<ReactorError?>()
        let (pool, address) = try makeServer { _ in
            let h = ClosureHandler()
            final class Acc: @unchecked Sendable { var bytes: [UInt8] = [] }
            let acc = Acc()
            h.onOpen = { c in
                try! c.write(Slice(Array("hello".utf8)))
                c.shutdownOutput()
            }
            h.onRead = { _, b in acc.bytes.append(contentsOf: b.bytes) }
            h.onEnd = { c in
                readAfterShutdown.set(acc.bytes)
                c.close()
            }
            h.onClose = { _, e in closed.set(e) }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(peer.readAll() == Array("hello".utf8))  // EOF after the bytes: the write side was shut down
        peer.send(Array("still reading".utf8))
        peer.shutdownWrite()
        #expect(readAfterShutdown.wait() == Array("still reading".utf8))
        #expect(closed.wait() == .some(nil))
    }

    @Test func ipv6ListenAndEcho() throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        defer { pool.shutdown() }
        let result = Result { () throws(ReactorError) -> SocketAddress in
            try pool.listen(host: "::1", port: 0) { _ in EchoHandler() }
        }
        if case .failure(let e) = result, e.errno == EADDRNOTAVAIL || e.errno == EAFNOSUPPORT {
            return  // no IPv6 loopback on this machine
        }
        let address = try result.get()
        #expect(address.description.hasPrefix("[::1]:"))
        let peer = try RawPeer(connectingTo: address)
        peer.send([1, 2, 3])
        #expect(peer.read(exactly: 3) == [1, 2, 3])
    }

    @Test func timersFireInDeadlineOrderAndTasksRunOnTheLoop() throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        defer { pool.shutdown() }
        let loop = pool.loops[0]
        let order = Box<[Int]>()
        loop.execute {
            #expect(loop.inLoop)
            final class Acc: @unchecked Sendable { var v: [Int] = [] }
            let acc = Acc()
            let now = EventLoop.now()
            for (i, delay) in [3_000_000, 1_000_000, 2_000_000, 500_000].enumerated() {
                loop.scheduleTimer(at: now + UInt64(delay)) {
                    acc.v.append(i)
                    if acc.v.count == 3 { order.set(acc.v) }
                }
            }
            let cancelled = loop.scheduleTimer(at: now + 1_500_000) { acc.v.append(99) }
            loop.cancelTimer(cancelled)
        }
        #expect(order.wait() == [3, 1, 2])
        #expect(!loop.inLoop)
    }

    @Test func aRepeatingTimerFiresUntilCancelled() throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        defer { pool.shutdown() }
        let loop = pool.loops[0]
        let fired = Box<Int>()
        loop.execute {
            final class State: @unchecked Sendable { var count = 0; var id: TimerID? }
            let state = State()
            state.id = loop.scheduleRepeatingTimer(every: 200_000) {
                state.count += 1
                if state.count == 5 {
                    loop.cancelTimer(state.id!)
                    // A task queued after this run sees whether the timer ran again.
                    loop.scheduleTimer(after: 2_000_000) { fired.set(state.count) }
                }
            }
        }
        #expect(fired.wait() == 5)
    }

    @Test func shutdownReleasesEverySliceAndClosesEveryConnectionOnce() throws {
        let tracker = LifetimeTracker(expecting: 100)
        let closes = Atomic<Int>(0)
        let opened = Signal()
        let (pool, address) = try makeServer(configure: { $0.highWatermark = 1 << 30; $0.lowWatermark = 1 }) { _ in
            let h = ClosureHandler()
            h.onOpen = { c in
                let block = [UInt8](repeating: 1, count: 256 * 1024)
                for i in 0..<100 { try! c.write(tracker.slice(block, tag: UInt64(i))) }
                opened.fire()
            }
            h.onClose = { _, _ in closes.wrappingAdd(1, ordering: .relaxed) }
            return h
        }
        let peer = try RawPeer(connectingTo: address)  // never reads: the graceful close cannot finish
        #expect(opened.wait())
        pool.shutdown(timeoutNanos: 200_000_000)
        #expect(tracker.releasedCount == 100 && tracker.releasedTwice.isEmpty)
        #expect(tracker.error(99) == .aborted)
        #expect(closes.load(ordering: .relaxed) == 1)
        #expect(pool.counters()[0].connectionsOpen == 0)
        withExtendedLifetime(peer) {}
    }
}


extension ReactorPool {
    /// Per-loop accepted counts once `total` connections were accepted (polls the loops' counters through their
    /// task queues: each poll is a round trip to every loop, not a sleep).
    func waitForAccepted(_ total: Int) -> [Int] {
        for _ in 0..<100_000 {
            let counts = counters().map(\.connectionsAccepted)
            if counts.reduce(0, +) >= total { return counts }
        }
        return counters().map(\.connectionsAccepted)
    }
}
