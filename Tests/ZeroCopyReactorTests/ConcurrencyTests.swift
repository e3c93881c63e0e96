// Many threads against one connection's lock-free chain and one loop's queues. Exact results only; these also
// run under ThreadSanitizer in tools/test.
import Glibc
import Synchronization
import Testing
@testable import ZeroCopyReactor

/// Runs `body(i)` on `count` new threads at once and waits for all of them.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let done = Signal()
    let remaining = Atomic<Int>(count)
    let start = Atomic<Bool>(false)
    for i in 0..<count {
        runThread {
            while !start.load(ordering: .acquiring) {}  // line the threads up so they really contend
            body(i)
            if remaining.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue == 0 { done.fire() }
        }
    }
    start.store(true, ordering: .releasing)
    #expect(done.wait(seconds: 120))
}

@Suite struct ConcurrencyTests {
    @Test func eightThreadsAppendMessagesThatArriveWholeAndInOrder() throws {
        let threads = 8, messages = 1500
        let (pool, peer, connection) = try connectedPair()
        defer { pool.shutdown() }
        let received = Box<[UInt8]>()
        runThread { received.set(peer.readAll()) }
        onThreads(threads) { t in
            var random = TestRandom(seed: UInt64(t + 1))
            for seq in 0..<messages {
                // header: thread, seq (4 bytes LE), body length (2 bytes LE); body; trailer 0xEE, thread.
                let length = random.int(0...300)
                let header: [UInt8] = [UInt8(t), UInt8(seq & 0xFF), UInt8(seq >> 8 & 0xFF), 0, 0,
                                       UInt8(length & 0xFF), UInt8(length >> 8)]
                let body = (0..<length).map { UInt8(truncatingIfNeeded: t &* 31 &+ seq &+ $0) }
                var m = OutboundMessage()
                m.append(Slice(header))
                m.append(Slice(body))
                m.append(Slice([0xEE, UInt8(t)]))
                try! connection.write(&m)
            }
        }
        connection.close()
        let stream = try #require(received.wait(seconds: 60))
        var next = [Int](repeating: 0, count: threads)
        var at = 0
        var wholeMessages = 0
        while at + 7 <= stream.count {
            let t = Int(stream[at])
            let seq = Int(stream[at + 1]) | Int(stream[at + 2]) << 8
            let length = Int(stream[at + 5]) | Int(stream[at + 6]) << 8
            guard t < threads, seq == next[t], at + 7 + length + 2 <= stream.count else { break }
            let body = stream[(at + 7)..<(at + 7 + length)]
            guard body.elementsEqual((0..<length).map { UInt8(truncatingIfNeeded: t &* 31 &+ seq &+ $0) }),
                  stream[at + 7 + length] == 0xEE, stream[at + 8 + length] == UInt8(t) else { break }
            next[t] += 1
            wholeMessages += 1
            at += 7 + length + 2
        }
        #expect(at == stream.count, "stream broke at byte \(at) of \(stream.count)")
        #expect(wholeMessages == threads * messages)
        #expect(next == [Int](repeating: messages, count: threads))
    }

    @Test func writesRacingAnAbortAreEachReleasedExactlyOnce() throws {
        let threads = 4, writes = 3000
        let tracker = LifetimeTracker(expecting: threads * writes)
        let (pool, peer, connection) = try connectedPair(configure: { $0.highWatermark = 1 << 30; $0.lowWatermark = 1 })
        defer { pool.shutdown() }
        let refused = Atomic<Int>(0)
        onThreads(threads) { t in
            let block = [UInt8](repeating: UInt8(t), count: 512)
            for i in 0..<writes {
                if t == 0 && i == writes / 2 { connection.abort() }
                do {
                    try connection.write(tracker.slice(block, tag: UInt64(t * writes + i)))
                } catch {
                    refused.wrappingAdd(1, ordering: .relaxed)
                }
            }
        }
        #expect(tracker.waitAll())
        #expect(tracker.releasedCount == threads * writes)
        #expect(tracker.releasedTwice.isEmpty)
        #expect(refused.load(ordering: .relaxed) >= writes / 2)  // thread 0's writes after its own abort
        withExtendedLifetime(peer) {}
    }

    @Test func tasksFromManyThreadsAllRunOnTheLoop() throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 2))
        defer { pool.shutdown() }
        let ran = Atomic<Int>(0)
        let offLoop = Atomic<Int>(0)
        onThreads(4) { t in
            let loop = pool.loops[t % 2]
            for _ in 0..<5000 {
                loop.execute {
                    if !loop.inLoop { offLoop.wrappingAdd(1, ordering: .relaxed) }
                    ran.wrappingAdd(1, ordering: .relaxed)
                }
            }
        }
        for loop in pool.loops { _ = loop.submitAndWait { 0 } }  // queues are FIFO: everything before has run
        #expect(ran.load(ordering: .relaxed) == 20000)
        #expect(offLoop.load(ordering: .relaxed) == 0)
    }

    @Test func crossThreadWritesCoalesceIntoFewWakeups() throws {
        let (pool, peer, connection) = try connectedPair()
        defer { pool.shutdown() }
        let payload = [UInt8](repeating: 9, count: 64)
        let count = 20000
        let received = Box<Int>()
        runThread { received.set(peer.read(exactly: count * 64).count) }
        for _ in 0..<count { try connection.write(Slice(payload)) }
        #expect(received.wait() == count * 64)
        let counters = pool.counters()[0]
        // The loop is woken only when the chain goes from empty to non-empty: far fewer wake-ups than writes.
        #expect(counters.wakeups < count / 2)
        #expect(counters.write.slicesWritten == count)
    }
}
