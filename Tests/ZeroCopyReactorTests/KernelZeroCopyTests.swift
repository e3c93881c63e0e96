// Kernel-side zero copy: file regions sent with sendfile, MSG_ZEROCOPY with its written and released events kept
// apart, and the copy controls that prove the profiler's iovec check works at the syscall boundary. Every test
// checks the exact bytes on the wire and that each slice is released exactly once, on every path.
import Dispatch
import Glibc
import Synchronization
import Testing
@_spi(CopyControl) @testable import ZeroCopyReactor

/// A temporary file of `count` bytes, byte i = (i * 7 + seed) % 256, removed at deinit.
final class TempFile: @unchecked Sendable {
    let path: String
    let bytes: [UInt8]

    init(count: Int, seed: Int = 0) {
        var template = Array("/tmp/zcr-file-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        precondition(fd >= 0, "mkstemp failed")
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed) }
        var off = 0
        while off < count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            precondition(n > 0, "write failed")
            off += n
        }
        Glibc.close(fd)
    }

    func truncate(to size: Int) { precondition(Glibc.truncate(path, off_t(size)) == 0) }

    deinit { unlink(path) }
}

@Suite struct FileRegionTests {
    /// A whole file, sent with sendfile between two memory slices, arrives byte for byte; the region is released
    /// once, after it was sent; the counters say sendfile sent it.
    @Test func aFileRegionBetweenMemorySlicesArrivesExactly() throws {
        let file = TempFile(count: 3 * 1024 * 1024 + 17)
        let tracker = LifetimeTracker(expecting: 3)
        let (pool, address) = try makeReplyingServer { c in
            var m = OutboundMessage()
            m.append(tracker.slice(Array("head:".utf8), tag: 1))
            var region = try! OpenFile(path: file.path).region()
            region.tag = 2
            region.observer = tracker
            m.append(region)
            m.append(tracker.slice(Array(":tail".utf8), tag: 3))
            try! c.write(&m)
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        let received = peer.readAll()
        #expect(received == Array("head:".utf8) + file.bytes + Array(":tail".utf8))
        #expect(tracker.waitAll())
        #expect(tracker.releasedTwice.isEmpty && tracker.errorCount == 0)
        let write = pool.counters()[0].write
        #expect(write.sendfileBytes == file.bytes.count)
        #expect(write.sendfileCalls >= 1)
    }

    /// sendfile partial writes scripted through the syscall layer: every call takes at most 4093 bytes, and the
    /// region resumes exactly where the kernel stopped each time.
    @Test func partialSendfilesResumeWhereTheKernelStopped() throws {
        let file = TempFile(count: 200_000, seed: 3)
        let fault = Box<Int>()
        let (pool, address) = try makeReplyingServer { c in
            fault.set(FaultInjection.inject(.shortCount(4093), on: .sendfile, fd: c.fd, times: 30))
            try! c.write(try! OpenFile(path: file.path).region(1000..<200_000))
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(peer.readAll() == Array(file.bytes[1000...]))
        let id = try #require(fault.wait())
        #expect(FaultInjection.hits(id) == 30)
        FaultInjection.disarm(id)
        #expect(pool.counters()[0].write.partialWrites >= 30)
    }

    /// Messages of memory and file slices, appended from four threads at once to one connection, arrive each in
    /// one piece and in order within each thread.
    @Test func memoryAndFileSlicesInterleavedFromSeveralThreads() throws {
        let file = TempFile(count: 64 * 1024, seed: 11)
        let (pool, peer, c) = try connectedPair()
        defer { pool.shutdown() }
        let shared = try OpenFile(path: file.path)
        let perThread = 50
        let tracker = LifetimeTracker(expecting: 4 * perThread * 3)
        onThreads(4) { t in
            for i in 0..<perThread {
                let start = (t * 997 + i * 131) % 60_000
                var m = OutboundMessage()
                m.append(tracker.slice(Array("<\(t):\(i):\(start)>".utf8), tag: UInt64(t * 10_000 + i * 3)))
                var region = try! shared.region(start..<start + 1000 + i)
                region.tag = UInt64(t * 10_000 + i * 3 + 1)
                region.observer = tracker
                m.append(region)
                m.append(tracker.slice(Array("</\(t)>".utf8), tag: UInt64(t * 10_000 + i * 3 + 2)))
                try! c.write(&m)
            }
        }
        c.close()
        var rest = peer.readAll()[...]
        var next = [Int](repeating: 0, count: 4)
        while !rest.isEmpty {
            let close = try #require(rest.firstIndex(of: UInt8(ascii: ">")))
            let fields = String(decoding: rest[rest.startIndex + 1..<close], as: UTF8.self).split(separator: ":").map { Int($0)! }
            let (t, i, start) = (fields[0], fields[1], fields[2])
            #expect(i == next[t], "thread \(t)'s messages arrive in order")
            next[t] += 1
            rest = rest[(close + 1)...]
            let body = rest.prefix(1000 + i)
            #expect(Array(body) == Array(file.bytes[start..<start + 1000 + i]))
            rest = rest.dropFirst(1000 + i)
            let trailer = Array("</\(t)>".utf8)
            #expect(Array(rest.prefix(trailer.count)) == trailer)
            rest = rest.dropFirst(trailer.count)
        }
        #expect(next == [perThread, perThread, perThread, perThread])
        #expect(tracker.waitAll())
        #expect(tracker.releasedTwice.isEmpty)
    }

    /// A file truncated under a send ends the connection with a typed error, and the peer gets a reset, never a
    /// clean end after a short reply; the region is released once, with the error.
    @Test func aFileTruncatedMidSendResetsWithATypedError() throws {
        let file = TempFile(count: 8 * 1024 * 1024, seed: 5)
        let closed = Box<ReactorError?>()
        let tracker = LifetimeTracker(expecting: 1)
        let (pool, address) = try makeServer(configure: { $0.socketSendBuffer = 16384 }) { _ in
            let h = ClosureHandler()
            h.onOpen = { c in
                var region = try! OpenFile(path: file.path).region()
                region.observer = tracker
                try! c.write(region)
                c.close()
            }
            h.onClose = { _, e in closed.set(e) }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address, receiveBuffer: 16384)
        let first = peer.read(exactly: 4096)
        #expect(first == Array(file.bytes[0..<4096]))
        file.truncate(to: 0)
        let (rest, end) = peer.readToEnd()
        #expect(first.count + rest < file.bytes.count)
        #expect(end == ECONNRESET)
        let error = try #require(closed.wait() ?? nil)
        guard case .fileTruncated(let path, _, let expected) = error else {
            Issue.record("closed with \(error), not fileTruncated")
            return
        }
        #expect(path == file.path && expected == file.bytes.count)
        #expect(tracker.waitAll())
        #expect(tracker.error(0) == error)
    }

    @Test func aDirectoryIsNotAFileToSend() {
        #expect(throws: ReactorError.invalidArgument("/tmp is not a regular file")) { try OpenFile(path: "/tmp") }
        #expect(throws: ReactorError.system(SystemError(errno: ENOENT, call: "open"))) {
            try OpenFile(path: "/nonexistent/zcr")
        }
    }
}

@Suite struct CopyControlTests {
    /// The verify mode checks the iovecs actually handed to sendmsg: a staging copy is foreign whether its buffer is
    /// new for every send or allocated once and reused; without a control, every entry is the caller's memory.
    @Test(arguments: [nil, CopyControl.allocate, CopyControl.reuse])
    func aStagingCopyIsForeignAtTheSyscallBoundary(control: CopyControl?) throws {
        var random = TestRandom(seed: 9)
        let payload = random.bytesFast(300_000)
        let (pool, address) = try makeReplyingServer(configure: {
            $0.verifyIovecs = true
            $0.copyControl = control
        }) { c in
            var m = OutboundMessage()
            for i in stride(from: 0, to: payload.count, by: 1000) {
                m.append(Slice(payload[i..<min(i + 1000, payload.count)]))
            }
            try! c.write(&m)
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(peer.readAll() == payload)
        let write = pool.counters()[0].write
        if control == nil {
            #expect(write.foreignIovecs == 0 && write.verifiedIovecs > 0 && write.stagedBytes == 0)
        } else {
            #expect(write.foreignIovecs > 0 && write.verifiedIovecs == 0)
            #expect(write.stagedBytes == payload.count)
        }
    }
}

extension TestRandom {
    /// `n` pseudo-random bytes, eight at a time.
    mutating func bytesFast(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            var v = next()
            for _ in 0..<8 where i < n {
                out[i] = UInt8(truncatingIfNeeded: v)
                v >>= 8
                i += 1
            }
        }
        return out
    }
}

/// MSG_ZEROCOPY on loopback, where the kernel always copies in the end and says so: each completion is COPIED,
/// the connection stops asking after the first, and slices are released when their completion arrives (or at the
/// completion deadline), exactly once, in append order.
@Suite struct MsgZeroCopyTests {
    /// Releases in order, after "written", each once; the completions cover exactly the zero-copy calls.
    final class OrderTracker: SliceObserver, @unchecked Sendable {
        let state = Locked((written: [UInt64](), released: [UInt64]()))
        let done = Signal()
        let expected: Int
        init(expected: Int) { self.expected = expected }
        func sliceWritten(tag: UInt64, byteCount: Int) { state.withLock { $0.written.append(tag) } }
        func sliceReleased(tag: UInt64, error: ReactorError?) {
            let n = state.withLock { s -> Int in
                s.released.append(tag)
                return s.released.count
            }
            if n == expected { done.fire() }
        }
        func slice(_ bytes: ArraySlice<UInt8>, tag: UInt64) -> Slice {
            var s = Slice(bytes)
            s.tag = tag
            s.observer = self
            return s
        }
    }

    /// Every completion on loopback is COPIED: they are all counted, the first stops zero copy for the connection,
    /// and what follows goes out as plain sends. Every slice is released once, in append order, after written.
    @Test func copiedCompletionsAreCountedAndZeroCopyStopsAfterThem() throws {
        var random = TestRandom(seed: 21)
        let payload = random.bytesFast(64 * 64 * 1024)
        let tracker = OrderTracker(expected: 64)
        let (pool, peer, c) = try connectedPair(configure: { $0.zeroCopyThreshold = 16 * 1024 })
        defer { pool.shutdown() }
        // One slice first, read at once: its completion (COPIED) comes back before the rest is written.
        try c.write(tracker.slice(payload[0..<65536], tag: 0))
        #expect(peer.read(exactly: 65536) == Array(payload[0..<65536]))
        #expect(eventually { tracker.state.withLock { $0.released.count } == 1 })
        for i in 1..<64 { try c.write(tracker.slice(payload[i * 65536..<(i + 1) * 65536], tag: UInt64(i))) }
        c.close()
        #expect(Array(payload[65536...]) == peer.readAll())
        #expect(tracker.done.wait())
        let (written, released) = tracker.state.withLock { ($0.written, $0.released) }
        #expect(written == (0..<64).map(UInt64.init))
        #expect(released == (0..<64).map(UInt64.init))
        let w = pool.counters()[0].write
        #expect(w.zeroCopySends == 1, "after the first COPIED completion the connection stops asking")
        #expect(w.zeroCopyCompletions == 1 && w.zeroCopyCopied == 1)
        #expect(w.zeroCopyBytes == 65536)
        #expect(w.bytesWritten == payload.count)
    }

    /// ENOBUFS (optmem_max or RLIMIT_MEMLOCK exhausted) falls back to a plain send of the same bytes at once: the
    /// bytes arrive exactly, nothing waits for a completion that will never come, and zero copy stays off.
    @Test func enobufsFallsBackToAPlainSendOfTheSameBytes() throws {
        var random = TestRandom(seed: 22)
        let payload = random.bytesFast(8 * 65536)
        let tracker = OrderTracker(expected: 8)
        let fault = Box<Int>()
        let (pool, address) = try makeReplyingServer(configure: { $0.zeroCopyThreshold = 1024 }) { c in
            fault.set(FaultInjection.inject(.errno(ENOBUFS), on: .sendmsg, fd: c.fd))
            var m = OutboundMessage()
            for i in 0..<8 { m.append(tracker.slice(payload[i * 65536..<(i + 1) * 65536], tag: UInt64(i))) }
            try! c.write(&m)
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(peer.readAll() == payload)
        #expect(tracker.done.wait())
        let id = try #require(fault.wait())
        #expect(FaultInjection.hits(id) == 1)
        FaultInjection.disarm(id)
        let w = pool.counters()[0].write
        #expect(w.zeroCopyFallbacks == 1 && w.zeroCopySends == 0 && w.zeroCopyCompletions == 0)
        #expect(tracker.state.withLock { $0.released } == (0..<8).map(UInt64.init))
    }

    /// A close (graceful or abort) with completions pending keeps the slices until the completions arrive: the
    /// handler hears the close at once, the slices are released only after, and then the descriptor is closed.
    /// A peer that never reads holds the completions back; for the graceful close it then reads everything (and
    /// gets the FIN), for the abort it gets a reset, and the reset's purge of the send queue completes them.
    @Test(arguments: [false, true])
    func aCloseWithCompletionsPendingReleasesWhenTheyArrive(abort: Bool) throws {
        var random = TestRandom(seed: 23)
        let payload = random.bytesFast(4 * 65536)
        let tracker = OrderTracker(expected: 4)
        let closed = Signal()
        let (pool, address) = try makeServer(configure: { $0.zeroCopyThreshold = 1024 }) { _ in
            let h = ClosureHandler()
            h.onOpen = { c in
                // One zero-copy call per slice (each write is flushed on its own before the next is queued).
                for i in 0..<4 { try! c.write(tracker.slice(payload[i * 65536..<(i + 1) * 65536], tag: UInt64(i))) }
                if abort { c.abort() } else { c.close() }
            }
            h.onClose = { _, _ in closed.fire() }
            return h
        }
        defer { pool.shutdown() }
        let peer: RawPeer?
        do {
            peer = try RawPeer(connectingTo: address)
        } catch let error as SystemError where abort && error.errno == ECONNRESET {
            // The server aborts as soon as it accepts: on a loaded machine the reset can reach the peer before its
            // connect() returns, which is the same outcome as reading the reset.
            peer = nil
        }
        #expect(closed.wait())
        // The peer has read nothing: on loopback the completions wait for it (or for the reset's purge).
        if !abort {
            #expect(tracker.state.withLock { $0.released.count } == 0)
            #expect(pool.counters()[0].zeroCopyLingering == 1)
            let (bytes, end) = try #require(peer).readToEnd()
            #expect(bytes == payload.count && end == 0)
        } else if let peer {
            let (_, end) = peer.readToEnd()
            #expect(end == ECONNRESET)
        }
        #expect(tracker.done.wait())
        #expect(tracker.state.withLock { $0.released } == (0..<4).map(UInt64.init))
        #expect(eventually { pool.counters()[0].zeroCopyLingering == 0 })
        let c = pool.counters()[0]
        #expect(c.zeroCopyDeadlineReleases == 0)
        #expect(c.write.zeroCopyCompletions == c.write.zeroCopySends)
    }

    /// Completions raise EPOLLERR; reading them must not read input past a pause. A peer keeps sending while the
    /// server has paused reading and writes zero-copy slices: nothing is read until reading resumes.
    @Test func completionsDoNotReadPastAPause() throws {
        var random = TestRandom(seed: 25)
        let payload = random.bytesFast(4 * 65536)
        let tracker = OrderTracker(expected: 4)
        let opened = Box<Connection>()
        let read = Locked(0)
        let (pool, address) = try makeServer(configure: { $0.zeroCopyThreshold = 1024 }) { _ in
            let h = ClosureHandler()
            h.onOpen = { c in
                c.pauseReading()
                opened.set(c)
            }
            h.onRead = { _, bytes in read.withLock { $0 += bytes.bytes.count } }
            return h
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        let c = try #require(opened.wait())
        peer.send([UInt8](repeating: 1, count: 1000))
        for i in 0..<4 { try c.write(tracker.slice(payload[i * 65536..<(i + 1) * 65536], tag: UInt64(i))) }
        #expect(peer.read(exactly: payload.count) == payload)
        #expect(tracker.done.wait())  // every completion was read (EPOLLERR events)...
        #expect(pool.counters()[0].write.zeroCopyCompletions >= 1)
        #expect(read.withLock { $0 } == 0)  // ...and no input with them
        c.resumeReading()
        #expect(eventually { read.withLock { $0 } == 1000 })
    }

    /// A peer that never reads after a graceful close: the slices wait for the completion deadline, no longer, and
    /// are then released (counted), and the descriptor is closed.
    @Test func theCompletionDeadlineReleasesWhatAPeerThatNeverReadsHoldsBack() throws {
        var random = TestRandom(seed: 24)
        let payload = random.bytesFast(4 * 65536)
        let tracker = OrderTracker(expected: 4)
        let (pool, address) = try makeReplyingServer(configure: {
            $0.zeroCopyThreshold = 1024
            $0.zeroCopyCompletionDeadlineNanos = 200_000_000
        }) { c in
            for i in 0..<4 { try! c.write(tracker.slice(payload[i * 65536..<(i + 1) * 65536], tag: UInt64(i))) }
        }
        defer { pool.shutdown() }
        let peer = try RawPeer(connectingTo: address)
        #expect(tracker.done.wait())
        #expect(eventually { pool.counters()[0].zeroCopyLingering == 0 })
        let c = pool.counters()[0]
        #expect(c.zeroCopyDeadlineReleases == 4)
        #expect(tracker.state.withLock { $0.released } == (0..<4).map(UInt64.init))
        _ = peer
    }
}
