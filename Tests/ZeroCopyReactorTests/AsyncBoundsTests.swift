// The async face's lifetimes and bounds: the inbound sequence keeps no slice it handed out, `serve` leaks no
// connection and returns when the pool shuts down, a second consumer gets an error instead of a continuation that
// never resumes, waiting for writability honours cancellation, and a drain ends idle connections gracefully and
// busy ones with a reset at the deadline.
import Glibc
import Synchronization
import Testing
@testable import ZeroCopyReactor

/// An owner whose lifetime a test can watch through a weak reference.
private final class Owner: @unchecked Sendable {
    let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
    deinit { bytes.deallocate() }
}

@Suite(.timeLimit(.minutes(1))) struct AsyncBoundsTests {
    /// On 1612259 `take()` advanced past a slot without clearing it, so every slice handed out stayed referenced
    /// (with its 64 KiB read buffer) until the buffer drained completely.
    @Test func theInboundStateKeepsNoSliceItHandedOut() {
        var state = InboundState(limit: 1 << 20)
        weak var first: Owner?
        do {
            let a = Owner(), b = Owner()
            first = a
            _ = state.deliver(Slice(unsafeBytes: UnsafeRawBufferPointer(a.bytes), owner: a))
            _ = state.deliver(Slice(unsafeBytes: UnsafeRawBufferPointer(b.bytes), owner: b))
            guard case .slice(let taken, _) = state.take() else {
                Issue.record("expected a slice")
                return
            }
            _ = taken
        }
        #expect(first == nil)  // handed out and dropped by the consumer: nothing else holds it
        #expect(state.heldSlices == 1)
    }

    /// Every connection `serve` accepted is gone once its handler returned and it closed: no cycle keeps it.
    @Test func serveKeepsNoConnectionAfterItEnds() async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        let bound = AsyncValue<SocketAddress>()
        let seen = Locked<[Weak]>([])
        let finished = AsyncValue<Bool>()
        let server = Task {
            try await pool.serve(host: "127.0.0.1", port: 0, onListening: { bound.set($0) }) { c in
                seen.withLock { $0.append(Weak(c)) }
                for try await slice in c.inbound { try await c.write(slice) }
                if seen.withLock({ $0.count }) == 20 { finished.set(true) }
            }
        }
        let address = try await bound.value
        try await onThread {
            for i in 0..<20 {
                let peer = try RawPeer(connectingTo: address)
                peer.send([UInt8(i)])
                _ = peer.read(exactly: 1)
                peer.shutdownWrite()
                _ = peer.readAll()
            }
        }
        _ = try await finished.value
        #expect(await eventuallyAsync { pool.counters()[0].connectionsOpen == 0 })
        #expect(await eventuallyAsync { seen.withLock { $0.allSatisfy { $0.value == nil } } })
        await stopServing(server, pool)
    }

    /// `serve` returns when the pool shuts down (a ServiceGroup may stop the pool first), and a handler in the
    /// middle of a reply to a peer that does not read is cut with a reset at the deadline, never a clean FIN.
    @Test func serveReturnsWhenThePoolShutsDownAndACutReplyIsAReset() async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        let bound = AsyncValue<SocketAddress>()
        let server = BuiltinServer(mode: .blast, blastBytes: 1 << 30)
        let serving = Task { try await server.serveAsync(on: pool, host: "127.0.0.1", port: 0) { bound.set($0) } }
        let idle = BuiltinServer(mode: .echo)
        let idleBound = AsyncValue<SocketAddress>()
        let idleServing = Task { try await idle.serveAsync(on: pool, host: "127.0.0.1", port: 0) { idleBound.set($0) } }
        // Blocking socket work runs on threads of its own: a cooperative thread it blocked could starve the handlers.
        let blastAddress = try await bound.value, idleAddress = try await idleBound.value
        let (blastPeer, idlePeer, echoed) = try await onThread { () throws -> (RawPeer, RawPeer, [UInt8]) in
            let blast = try RawPeer(connectingTo: blastAddress, receiveBuffer: 4096)
            let idle = try RawPeer(connectingTo: idleAddress)
            idle.send([1])
            return (blast, idle, idle.read(exactly: 1))
        }
        #expect(echoed == [1])
        #expect(await eventuallyAsync { pool.counters()[0].write.partialWrites + pool.counters()[0].write.wouldBlocks > 0 })
        await pool.shutdownGracefully(timeoutNanos: 300_000_000)
        _ = try? await serving.value
        _ = try? await idleServing.value
        let (rest, end) = await offThread { () -> ([UInt8], Int32) in
            (idlePeer.readAll(), blastPeer.readToEnd().end)
        }
        #expect(rest.isEmpty)  // the idle connection: its handler saw the end and returned (FIN)
        #expect(end == ECONNRESET)
        #expect(pool.counters()[0].connectionsAborted == 1)
    }

    /// A second task iterating the same inbound sequence while the first waits gets `.concurrentConsumers`.
    @Test func aSecondConsumerGetsAClearError() async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        let bound = AsyncValue<SocketAddress>()
        let second = AsyncValue<String>()
        let server = Task {
            try await pool.serve(host: "127.0.0.1", port: 0, onListening: { bound.set($0) }) { c in
                let waiting = Task { for try await _ in c.inbound {} }
                // Let the first consumer park: it owns the sequence until the peer sends.
                while c.bridge.waiting == false { await Task.yield() }
                do {
                    for try await _ in c.inbound {}
                    second.set("no error")
                } catch {
                    second.set("\(error)")
                }
                waiting.cancel()
            }
        }
        let address = try await bound.value
        let peer = try await onThread { try RawPeer(connectingTo: address) }
        #expect(try await second.value == "\(ReactorError.concurrentConsumers)")
        _ = peer
        await stopServing(server, pool)
    }

    /// A task waiting for writability that is cancelled throws CancellationError at once; the connection stays.
    @Test func waitingForWritabilityHonoursCancellation() async throws {
        let (pool, peer, connection) = try await onThread {
            try connectedPair { $0.highWatermark = 4096; $0.lowWatermark = 1024 }
        }
        try connection.write(Slice([UInt8](repeating: 1, count: 8 << 20)))
        #expect(await eventuallyAsync { !connection.isWritable })
        let waiter = Task { try await connection.waitUntilWritable() }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(connection.pendingBytes > 0)  // not aborted: the bytes are still queued
        _ = peer
        await pool.shutdownGracefully(timeoutNanos: 100_000_000)
    }
}

/// A weak reference to an async connection.
struct Weak: @unchecked Sendable {
    weak var value: AsyncConnection?
    init(_ value: AsyncConnection) { self.value = value }
}

/// Polls `condition` every millisecond, up to `seconds`, without blocking a cooperative thread.
func eventuallyAsync(seconds: Double = 10, _ condition: () -> Bool) async -> Bool {
    let end = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < end {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(1))
    }
    return condition()
}
