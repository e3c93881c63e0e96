// Micro-benchmarks of the write chain alone (no socket): appends from one and from 4 threads, and the flush of
// 1024 slices through a fake syscall that takes every byte. One sample = 1024 slices of 64 bytes cut from one
// buffer, so ns per slice = wall clock / 1024. The committed thresholds (Thresholds/*.p90.json) hold only
// mallocCountTotal = 0: allocation budgets do not depend on timing, so CI can check them anywhere
// (`swift package benchmark thresholds check`); timings are reported, never gated.
import Benchmark
import Foundation
import Synchronization
@_spi(Benchmarks) import ZeroCopyReactor

/// The one buffer every slice is cut from.
final class Payload: @unchecked Sendable {
    static let sliceBytes = 64
    static let slices = 1024
    let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: sliceBytes * slices, alignment: 64)
    init() { bytes.initializeMemory(as: UInt8.self, repeating: 0x5a) }
    func slice(_ i: Int) -> Slice {
        let start = (i % Self.slices) * Self.sliceBytes
        return Slice(unsafeBytes: UnsafeRawBufferPointer(rebasing: bytes[start..<start + Self.sliceBytes]), owner: self)
    }
}

/// Flushes everything queued through a fake syscall that accepts all the bytes it is offered.
@inline(__always)
func flushAll(_ probe: WriteChainProbe) {
    probe.flush { _, bytes in bytes }
}

/// Four producer threads that each append `perThread` slices when released, then report done.
final class Producers: @unchecked Sendable {
    let count: Int
    let perThread: Int
    let payload: Payload
    let probe: WriteChainProbe
    private let generation = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)

    init(count: Int, perThread: Int, payload: Payload, probe: WriteChainProbe) {
        self.count = count
        self.perThread = perThread
        self.payload = payload
        self.probe = probe
        for t in 0..<count {
            let thread = Thread { [self] in run(index: t) }
            thread.start()
        }
    }

    private func run(index: Int) {
        var seen = 0
        while true {
            var g = generation.load(ordering: .acquiring)
            while g == seen {
                if stopping.load(ordering: .relaxed) { return }
                sched_yield()
                g = generation.load(ordering: .acquiring)
            }
            seen = g
            for i in 0..<perThread { probe.append(payload.slice(index * perThread + i)) }
            finished.add(1, ordering: .releasing)
        }
    }

    /// Releases every producer for one round and waits until all have appended.
    func round() {
        finished.store(0, ordering: .relaxed)
        generation.add(1, ordering: .releasing)
        while finished.load(ordering: .acquiring) < count { sched_yield() }
    }

    func stop() { stopping.store(true, ordering: .relaxed) }
}

/// State shared by every sample of a benchmark: package-benchmark calls the closure once per sample, and the
/// producer threads, the chain and the node pools must outlive samples to show the steady state.
enum Shared {
    static let payload = Payload()
    static let single = WriteChainProbe()
    static let message = WriteChainProbe()
    static let flushOnly = WriteChainProbe()
    static let concurrent = WriteChainProbe()
    static let producers = Producers(count: 4, perThread: Payload.slices / 4, payload: payload, probe: concurrent)
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput],
        warmupIterations: 200,
        scalingFactor: .one,
        maxDuration: .seconds(1),
        maxIterations: 200_000
    )

    // 1024 single-slice appends from the flushing thread, then one flush.
    Benchmark("append-1-thread-1024x64B-then-flush") { benchmark in
        let (payload, probe) = (Shared.payload, Shared.single)
        for _ in benchmark.scaledIterations {
            for i in 0..<Payload.slices { probe.append(payload.slice(i)) }
            flushAll(probe)
        }
    }

    // One OutboundMessage of 1024 slices (one atomic append), then one flush.
    Benchmark("append-message-1024x64B-then-flush") { benchmark in
        let (payload, probe) = (Shared.payload, Shared.message)
        for _ in benchmark.scaledIterations {
            var message = OutboundMessage()
            for i in 0..<Payload.slices { message.append(payload.slice(i)) }
            probe.append(&message)
            flushAll(probe)
        }
    }

    // 4 threads append 256 slices each (1024 in all) at the same time; then this thread flushes them. The nodes
    // go back to their producers' pools across threads.
    Benchmark("append-4-threads-1024x64B-then-flush") { benchmark in
        let (producers, probe) = (Shared.producers, Shared.concurrent)
        for _ in benchmark.scaledIterations {
            producers.round()
            flushAll(probe)
        }
    }

    // The flush alone: 1024 queued slices gathered into iovecs and "sent" by the fake syscall. The appends happen
    // before `startMeasurement()`, which restarts the sample's clock and counters.
    Benchmark("flush-1024x64B") { benchmark in
        let (payload, probe) = (Shared.payload, Shared.flushOnly)
        for i in 0..<Payload.slices { probe.append(payload.slice(i)) }
        benchmark.startMeasurement()
        flushAll(probe)
    }
}
