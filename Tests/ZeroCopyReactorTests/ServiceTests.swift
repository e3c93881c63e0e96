// The pool in a swift-service-lifecycle ServiceGroup, and its counters reaching swift-metrics.
import CoreMetrics
import Logging
import ServiceLifecycle
import Testing
@testable import ZeroCopyReactor

@Suite(.timeLimit(.minutes(1))) struct ServiceTests {
    @Test func thePoolRunsInAServiceGroupAndStopsOnGracefulShutdown() async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        let group = ServiceGroup(services: [pool], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        let address = try pool.listen(host: "127.0.0.1", port: 0) { _ in EchoHandler() }
        let echoed = try await onThread { () throws -> [UInt8] in
            let peer = try RawPeer(connectingTo: address)
            peer.send([4, 5, 6])
            return peer.read(exactly: 3)
        }
        #expect(echoed == [4, 5, 6])
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(pool.loops[0].execute {} == false)  // the loop has stopped
    }

    @Test func loopCountersReachSwiftMetrics() async throws {
        let metrics = TestMetrics.shared
        var config = ReactorConfiguration(loops: 1)
        config.metricsIntervalNanos = 5_000_000
        let pool = try ReactorPool(configuration: config)
        let address = try pool.listen(host: "127.0.0.1", port: 0) { _ in EchoHandler() }
        let payload = [UInt8](repeating: 1, count: 10_000)
        _ = try await onThread { () throws -> Int in
            let peer = try RawPeer(connectingTo: address)
            peer.send(payload)
            return peer.read(exactly: payload.count).count
        }
        // The loop reports every 5 ms; wait for the report that carries the echoed bytes.
        #expect(await metrics.waitFor("zcr_bytes_written", atLeast: 10_000))
        #expect(await metrics.waitFor("zcr_bytes_read", atLeast: 10_000))
        await pool.shutdownGracefully()
    }
}

/// A swift-metrics backend that sums counters by label (bootstrapped once for the whole test process).
final class TestMetrics: MetricsFactory, @unchecked Sendable {
    static let shared: TestMetrics = {
        let m = TestMetrics()
        MetricsSystem.bootstrap(m)
        return m
    }()

    private let totals = Locked<[String: Int64]>([:])
    private let waiters = Locked<[(String, Int64, CheckedContinuation<Bool, Never>)]>([])

    func add(_ label: String, _ amount: Int64) {
        let total = totals.withLock { t -> Int64 in
            t[label, default: 0] += amount
            return t[label]!
        }
        let ready = waiters.withLock { w -> [CheckedContinuation<Bool, Never>] in
            let hit = w.filter { $0.0 == label && total >= $0.1 }.map(\.2)
            w.removeAll { $0.0 == label && total >= $0.1 }
            return hit
        }
        for c in ready { c.resume(returning: true) }
    }

    func waitFor(_ label: String, atLeast value: Int64) async -> Bool {
        await withCheckedContinuation { c in
            let now = totals.withLock { $0[label, default: 0] }
            if now >= value { c.resume(returning: true); return }
            waiters.withLock { $0.append((label, value, c)) }
            // Re-check after registering, in case the last report came in between.
            if totals.withLock({ $0[label, default: 0] }) >= value {
                let mine = waiters.withLock { w -> CheckedContinuation<Bool, Never>? in
                    guard let i = w.firstIndex(where: { $0.0 == label && $0.1 == value }) else { return nil }
                    return w.remove(at: i).2
                }
                mine?.resume(returning: true)
            }
        }
    }

    final class Handler: CounterHandler, RecorderHandler, @unchecked Sendable {
        let label: String
        let sink: TestMetrics
        init(_ label: String, _ sink: TestMetrics) { self.label = label; self.sink = sink }
        func increment(by amount: Int64) { sink.add(label, amount) }
        func reset() {}
        func record(_ value: Int64) {}
        func record(_ value: Double) {}
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { Handler(label, self) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        Handler(label, self)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { NOOPMetricsHandler.instance }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}
