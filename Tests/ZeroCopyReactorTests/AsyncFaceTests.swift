// What a Swift server developer reaches for on the async face: addresses, an async client connect, handler failures
// that are counted and reset their connection, and `serve` under a ServiceGroup, whatever the order of services:
// it returns, and a reply cut short by the shutdown ends with a reset, never a clean FIN after partial data.
import Glibc
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import ZeroCopyReactor

@Suite(.timeLimit(.minutes(1))) struct AsyncFaceTests {
    @Test func connectionsKnowBothAddresses() async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        let bound = AsyncValue<SocketAddress>()
        let seen = AsyncValue<(SocketAddress?, SocketAddress?)>()
        let server = Task {
            try await pool.serve(host: "127.0.0.1", port: 0, onListening: { bound.set($0) }) { c in
                seen.set((c.remoteAddress, c.localAddress))
                for try await _ in c.inbound {}
            }
        }
        let address = try await bound.value
        let client = try await pool.connect(to: address)
        let (remote, local) = try await seen.value
        #expect(local == address)
        #expect(remote == client.localAddress)
        #expect(client.remoteAddress == address)
        #expect(client.localAddress?.port ?? 0 > 0)
        client.close()
        await stopServing(server, pool)
    }

    @Test func anAsyncConnectEchoesAndAFailedOneThrowsItsError() async throws {
        let (pool, address) = try makeServer { _ in EchoHandler() }
        let client = try await pool.connect(to: address)
        try await client.write(Slice([1, 2, 3]))
        var got: [UInt8] = []
        for try await slice in client.inbound {
            got += slice.bytes
            if got.count == 3 { break }
        }
        #expect(got == [1, 2, 3])
        client.close()
        // Nobody listens on the port of a listener that was closed: ECONNREFUSED, as an error, not a hang.
        let listener = try RawListener()
        let refusedAt = listener.address
        listener.close()
        await #expect(throws: ReactorError.system(SystemError(errno: ECONNREFUSED, call: "connect"))) {
            _ = try await pool.connect(to: refusedAt)
        }
        await pool.shutdownGracefully()
    }

    /// A handler that throws with a reply half sent: its peer gets a reset, the failure is counted.
    @Test func aFailingHandlerResetsItsConnectionAndIsCounted() async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        let bound = AsyncValue<SocketAddress>()
        struct Broken: Error {}
        let server = Task {
            try await pool.serve(host: "127.0.0.1", port: 0, onListening: { bound.set($0) }) { c in
                try await c.write(Slice([UInt8](repeating: 5, count: 1000)))
                throw Broken()
            }
        }
        let address = try await bound.value
        let (count, end) = try await onThread { () throws -> (Int, Int32) in
            let peer = try RawPeer(connectingTo: address)
            return withExtendedLifetime(peer) { peer.readToEnd() }
        }
        #expect(count <= 1000)
        #expect(end == ECONNRESET)
        #expect(await eventuallyAsync { pool.counters()[0].handlerFailures == 1 })
        await stopServing(server, pool)
    }

    /// The new user's case: a handler in the middle of a large reply when the group shuts down. With the serving
    /// service first or second, `group.run()` returns, and the peer sees either the whole reply then EOF or a part
    /// then a reset: never a part then a clean EOF (1612259: 14 MiB of 60 MiB, then FIN; or a hang until SIGKILL).
    @Test(arguments: [true, false])
    func serveUnderAServiceGroupReturnsAndNeverEndsAPartialReplyWithFIN(serveFirst: Bool) async throws {
        var config = ReactorConfiguration(loops: 1)
        config.socketSendBuffer = 65536
        let pool = try ReactorPool(configuration: config)
        let bound = AsyncValue<SocketAddress>()
        let total = 60 << 20
        let payload = BlastPayload(sliceBytes: 65536)
        let serving = ServeService(pool: pool, bound: bound) { c in
            var sent = 0
            while sent < total {
                let n = min(65536, total - sent)
                try await c.write(payload.slice(streamOffset: sent, count: n))
                sent += n
            }
        }
        let services: [any Service] = serveFirst ? [serving, pool] : [pool, serving]
        let group = ServiceGroup(services: services, logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        let address = try await bound.value
        let started = AsyncValue<Bool>()
        let reading = Task {
            try await onThread { () throws -> (Int, Int32) in
                let peer = try RawPeer(connectingTo: address, receiveBuffer: 65536)
                var buffer = [UInt8](repeating: 0, count: 65536)
                var got = 0
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(peer.fd, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { return (got, n == 0 ? 0 : errno) }
                    if got < 1 << 20 && got + n >= 1 << 20 { started.set(true) }
                    got += n
                    if got >= 1 << 20 { usleep(2000) }  // a slow reader: the reply is still going at shutdown
                }
            }
        }
        _ = try await started.value
        await group.triggerGracefulShutdown()
        try await running.value  // returns: serve ended with the pool, in either order
        let (got, end) = try await reading.value
        #expect(got == total ? end == 0 : end == ECONNRESET, "got \(got) of \(total), end errno \(end)")
    }
}

/// `pool.serve` as a service, cancelled on graceful shutdown (the recipe of the DocC shutdown page).
struct ServeService: Service {
    let pool: ReactorPool
    let bound: AsyncValue<SocketAddress>
    let handler: @Sendable (AsyncConnection) async throws -> Void

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await pool.serve(host: "127.0.0.1", port: 0, onListening: { bound.set($0) }, handler: handler)
        }
    }
}
