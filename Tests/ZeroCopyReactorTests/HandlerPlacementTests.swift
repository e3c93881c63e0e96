// Where `serve` runs handlers: on the connection's own loop by default (the loop is a TaskExecutor), so that a read
// resumes its consumer on the thread that read it; on the global executor when asked. Checked after every kind of
// suspension a handler makes (start, a read, a write, after a peer's reset), with peers that reset mid-stream and
// that churn connections, and every handler task must end.
import Glibc
import Testing
@testable import ZeroCopyReactor

@Suite struct HandlerPlacementTests {
    /// What one handler saw: whether it was on its connection's loop at each step, and how it ended.
    struct Seen: Sendable {
        var onLoop: [Bool] = []
        var ended: String = ""
    }

    @Test(arguments: [HandlerExecutor.connectionLoop, .global])
    func handlersRunWhereTheyAreToldAfterEverySuspension(_ placement: HandlerExecutor) async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 2))
        let bound = AsyncValue<SocketAddress>()
        let seen = Locked<[Seen]>([])
        let connections = 24
        let server = Task {
            try await pool.serve(host: "127.0.0.1", port: 0, handlerExecutor: placement, onListening: { bound.set($0) }) { c in
                var mine = Seen()
                mine.onLoop.append(c.connection.loop.inLoop)
                do {
                    for try await slice in c.inbound {
                        mine.onLoop.append(c.connection.loop.inLoop)
                        try await c.write(slice)
                        mine.onLoop.append(c.connection.loop.inLoop)
                    }
                    mine.ended = "eof"
                } catch {
                    mine.onLoop.append(c.connection.loop.inLoop)
                    mine.ended = "\(error)"
                }
                let record = mine
                seen.withLock { $0.append(record) }
            }
        }
        let address = try await bound.value
        try await onThread {
            for i in 0..<connections {
                let peer = try RawPeer(connectingTo: address)
                peer.send([UInt8](repeating: UInt8(i), count: 3000))
                #expect(peer.read(exactly: 3000) == [UInt8](repeating: UInt8(i), count: 3000))
                if i % 2 == 0 {
                    peer.shutdownWrite()  // a clean end: the handler returns, the connection closes gracefully
                    #expect(peer.readAll().isEmpty)
                } else {
                    peer.reset()  // hostile: a reset under the handler
                }
            }
        }
        #expect(await eventuallyAsync { seen.withLock { $0.count } == connections })
        let all = seen.withLock { $0 }
        let wanted = placement == .connectionLoop
        for s in all {
            #expect(!s.onLoop.isEmpty)
            #expect(s.onLoop.allSatisfy { $0 == wanted }, "\(placement): on the loop at each step: \(s.onLoop)")
        }
        #expect(all.filter { $0.ended == "eof" }.count == connections / 2)
        #expect(all.filter { $0.ended != "eof" }.count == connections / 2, "\(all.map(\.ended))")
        #expect(await eventuallyAsync { pool.counters().allSatisfy { $0.connectionsOpen == 0 } })
        server.cancel()
        _ = try? await server.value
        await pool.shutdownGracefully()
    }

    /// A churn of connections that open and go at once, each handler parked on its loop: cancelling `serve` must
    /// end every handler task (none is left running or parked), and `serve` must return.
    @Test func cancellingServeEndsEveryHandlerTaskOnTheLoops() async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 2))
        let bound = AsyncValue<SocketAddress>()
        let started = Locked(0)
        let ended = Locked(0)
        let server = Task {
            try await pool.serve(host: "127.0.0.1", port: 0, onListening: { bound.set($0) }) { c in
                started.withLock { $0 += 1 }
                defer { ended.withLock { $0 += 1 } }
                for try await _ in c.inbound {}
            }
        }
        let address = try await bound.value
        let held = try await onThread { () throws -> [RawPeer] in
            var held: [RawPeer] = []
            for i in 0..<200 {
                let peer = try RawPeer(connectingTo: address)
                if i % 4 == 0 { held.append(peer) } else { peer.reset() }  // churn: most go at once
            }
            return held
        }
        #expect(await eventuallyAsync { started.withLock { $0 } == 200 })
        #expect(await eventuallyAsync { ended.withLock { $0 } == 150 })  // the reset ones ended on their own
        server.cancel()
        _ = try? await server.value  // returns only after every handler task ended
        #expect(ended.withLock { $0 } == 200)
        // Cancelled handlers abort their connections: each held peer gets a reset, never a clean end.
        let ends = try await onThread { held.map { $0.readToEnd().end } }
        #expect(ends.allSatisfy { $0 == ECONNRESET }, "\(ends)")
        #expect(await eventuallyAsync { pool.counters().allSatisfy { $0.connectionsOpen == 0 } })
        await pool.shutdownGracefully()
    }

    /// Handlers run on their loop now, so a handler that calls the blocking `shutdown()` calls it on a loop thread,
    /// where it cannot wait for the loops: it must stop the pool anyway, say so, and return, never trap or hang.
    @Test func theBlockingShutdownCalledFromAHandlerStopsThePoolWithoutWaiting() async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 2))
        let bound = AsyncValue<SocketAddress>()
        let returned = Locked(false)
        let server = Task {
            try await pool.serve(host: "127.0.0.1", port: 0, onListening: { bound.set($0) }) { c in
                for try await slice in c.inbound {
                    try await c.write(slice)
                    pool.shutdown(timeoutNanos: 2_000_000_000)  // on this handler's loop thread
                    returned.withLock { $0 = true }
                    return
                }
            }
        }
        let address = try await bound.value
        let (echo, end) = try await onThread { () throws -> ([UInt8], (bytes: Int, end: Int32)) in
            let peer = try RawPeer(connectingTo: address)
            peer.send([42])
            return (peer.read(exactly: 1), peer.readToEnd())
        }
        #expect(echo == [42])
        #expect(end.end == 0, "the handler returned: its reply ends with a clean FIN")
        _ = try await server.value  // serve returns: the pool shut down
        #expect(returned.withLock { $0 })
        #expect(await eventuallyAsync { pool.loops.allSatisfy { $0.stopped } })
        #expect(throws: (any Error).self) { _ = try RawPeer(connectingTo: address) }
    }

    /// A handler on a loop cancels `serve` (a "stop" command) while other handlers of that loop are parked in
    /// `next()`. Their cancellation handlers then run on that loop's thread, inside the runtime's cancellation of
    /// their task (which holds the task's status lock): an abort that ran there at once would resume that same task
    /// and so ask the runtime for its executor under the lock it holds, and the loop would hang for good. The abort
    /// must be queued to the loop instead; every parked handler must end, every peer get a reset, `serve` return.
    @Test(.timeLimit(.minutes(1))) func aHandlerThatCancelsServeEndsTheParkedHandlersOfItsLoop() async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        let bound = AsyncValue<SocketAddress>()
        let serverTask = Locked<Task<Void, any Error>?>(nil)
        let parked = Locked(0)
        let ended = Locked(0)
        let server = Task {
            try await pool.serve(host: "127.0.0.1", port: 0, onListening: { bound.set($0) }) { c in
                defer { ended.withLock { $0 += 1 } }
                for try await slice in c.inbound {
                    if slice.bytes.first == UInt8(ascii: "S") {
                        serverTask.withLock { $0 }?.cancel()  // on this handler's loop thread
                        return
                    }
                    parked.withLock { $0 += 1 }
                }
            }
        }
        serverTask.withLock { $0 = server }
        let address = try await bound.value
        let peers = try await onThread { () throws -> [RawPeer] in
            try (0..<8).map { _ in
                let peer = try RawPeer(connectingTo: address)
                peer.send([UInt8(ascii: "x")])
                return peer
            }
        }
        #expect(await eventuallyAsync { parked.withLock { $0 } == 8 })
        let stopper = try await onThread { () throws -> RawPeer in
            let peer = try RawPeer(connectingTo: address)
            peer.send([UInt8(ascii: "S")])
            return peer
        }
        _ = try? await server.value
        #expect(ended.withLock { $0 } == 9)
        let ends = try await onThread { peers.map { $0.readToEnd().end } }
        #expect(ends.allSatisfy { $0 == ECONNRESET }, "\(ends)")
        _ = stopper
        await pool.shutdownGracefully()
    }
}
