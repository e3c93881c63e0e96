// Cutting a graceful shutdown short (ReactorPool.cutShutdownShort): a connection whose peer never reads would hold
// the drain until its deadline; the cut aborts it at once, releases every slice exactly once, and resets the peer.
// The drains here are 30 s long, so a cut that did not work fails the 10 s waits instead of passing slowly.
import Glibc
import Testing
@testable import ZeroCopyReactor

@Suite(.timeLimit(.minutes(2))) struct DrainTests {
    static let drain: UInt64 = 30_000_000_000

    /// A one-loop pool whose connection has 4 MiB queued for a peer that never reads (8 KiB send buffer).
    func stalled() throws -> (ReactorPool, RawPeer, LifetimeTracker) {
        let (pool, peer, connection) = try connectedPair {
            $0.socketSendBuffer = 4096
            $0.highWatermark = 1 << 30
            $0.lowWatermark = 1 << 29
        }
        let tracker = LifetimeTracker(expecting: 64)
        let chunk = [UInt8](repeating: 0x5a, count: 64 * 1024)
        for tag in 0..<64 { try connection.write(tracker.slice(chunk, tag: UInt64(tag))) }
        return (pool, peer, tracker)
    }

    /// The peer reads what its kernel buffered and then must see a reset, not an end of stream.
    func expectReset(_ peer: RawPeer) {
        #expect(peer.readToEnd().end == ECONNRESET)
    }

    func expectEverySliceReleasedOnce(_ tracker: LifetimeTracker) {
        #expect(tracker.waitAll())
        #expect(tracker.releasedCount == 64)
        #expect(tracker.releasedTwice.isEmpty)
        #expect(tracker.error(63) == .aborted)  // the last slice was still queued: the kernel cannot hold 4 MiB
    }

    @Test func cutShutdownShortEndsADrainInProgress() throws {
        let (pool, peer, tracker) = try stalled()
        let done = Signal()
        runThread {
            pool.shutdown(timeoutNanos: Self.drain)
            done.fire()
        }
        pool.cutShutdownShort()
        #expect(done.wait(seconds: 10))
        expectEverySliceReleasedOnce(tracker)
        expectReset(peer)
    }

    /// The order in which the cut and the shutdown's own start reach a loop does not matter: the earliest deadline
    /// wins. The loop is held in a task while both are queued behind it, the cut first.
    @Test func aShutdownStartThatArrivesAfterTheCutDoesNotLengthenTheDrain() throws {
        let (pool, peer, tracker) = try stalled()
        let loop = pool.loops[0]
        let held = Signal()
        let release = Signal()
        loop.execute {
            held.fire()
            _ = release.wait()
        }
        #expect(held.wait())
        pool.cutShutdownShort()
        loop.beginShutdown(deadline: EventLoop.now() + Self.drain)  // what shutdown(timeoutNanos:) queues
        release.fire()
        let done = Signal()
        runThread {
            pool.shutdown(timeoutNanos: Self.drain)
            done.fire()
        }
        #expect(done.wait(seconds: 10))
        expectEverySliceReleasedOnce(tracker)
        expectReset(peer)
    }
}
