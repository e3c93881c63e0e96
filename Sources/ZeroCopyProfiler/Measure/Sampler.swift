// The once-a-second timeline: reads the meter without flushing any cache (cheap: one task per loop, one `epoch`,
// one /proc read) and turns cumulative counters into samples. It must never run on a loop thread.
import ZeroCopyReactor

final class Sampler {
    private let meter: ReactorMeter
    private let started: UInt64
    private let baseAllocated: UInt64?
    private var last: (nanos: UInt64, bytesSent: Int)
    private(set) var samples: [TimelineSample] = []
    /// When the next once-a-second sample is due: whole seconds since the run started, whatever the phase.
    private(set) var nextTick: UInt64
    private let progress: (TimelineSample) -> Void

    init(meter: ReactorMeter, started: UInt64, progress: @escaping (TimelineSample) -> Void) {
        self.meter = meter
        self.started = started
        self.progress = progress
        nextTick = started &+ 1_000_000_000
        let first = meter.snapshot()
        baseAllocated = first.reactorAllocatedBytes
        last = (first.nanos, first.bytesWritten)
    }

    func seconds(_ nanos: UInt64) -> Double { Double(nanos &- started) / 1e9 }

    /// Takes the once-a-second sample if it is due.
    func tickIfDue(_ phase: TimelineSample.Phase) {
        let now = EventLoop.now()
        guard now >= nextTick else { return }
        sample(phase)
        while nextTick <= now { nextTick &+= 1_000_000_000 }
    }

    /// Takes a sample now (or records `snapshot`, taken by the caller at a window edge).
    func sample(_ phase: TimelineSample.Phase, event: String = "tick", snapshot given: MeterSnapshot? = nil) {
        let s = given ?? meter.snapshot()
        let dt = Double(s.nanos &- last.nanos) / 1e9
        let sent = s.bytesWritten
        let sample = TimelineSample(
            event: event, seconds: seconds(s.nanos), phase: phase, bytesSent: sent,
            throughputBytesPerSecond: dt >= 0.05 ? Double(sent - last.bytesSent) / dt : nil,
            reactorBytesAllocated: s.reactorAllocatedBytes.flatMap { a in baseAllocated.map { a &- $0 } },
            heap: s.heap, rss: s.memory?.rss, rssPeak: s.memory?.peak, bytesCopied: s.bytesCopied)
        last = (s.nanos, sent)
        samples.append(sample)
        progress(sample)
    }
}
