// The timeline: takes snapshots at a fixed interval (fitted to the window: at least about 60 points, every 10 ms
// or less for short windows) and turns cumulative counters into samples. It reads the in-process meter without
// flushing any cache, or an attached server's endpoint. It must never run on a loop thread.
import ZeroCopyReactor

/// How often to sample a window of a given length.
public enum SampleInterval {
    /// `window / 60`, between 1 ms and 1 s: 60 points or more, and at most 10 ms apart for windows under 0.6 s.
    public static func fitting(windowSeconds: Double) -> Double {
        min(1.0, max(0.001, windowSeconds / 60))
    }

    /// For phases whose length is not known in advance (they end when the traffic completes).
    public static let unknownLength = 0.004
}

final class Sampler {
    private let take: () -> MeterSnapshot
    private let started: UInt64
    private let baseAllocated: UInt64?
    private let baseMemcpy: UInt64?
    private var last: (nanos: UInt64, bytesSent: Int)
    private(set) var samples: [TimelineSample] = []
    /// Nanoseconds between samples.
    var intervalNanos: UInt64
    /// When the next sample is due.
    private(set) var nextTick: UInt64
    private var lastProgressSecond = -1
    private let progress: (TimelineSample) -> Void

    convenience init(
        meter: ReactorMeter, started: UInt64, interval: Double, progress: @escaping (TimelineSample) -> Void
    ) {
        self.init(first: meter.snapshot(), started: started, interval: interval, progress: progress) {
            meter.snapshot()
        }
    }

    /// `first` is the baseline of the cumulative figures; `take` takes a snapshot now.
    init(
        first: MeterSnapshot, started: UInt64, interval: Double, progress: @escaping (TimelineSample) -> Void,
        take: @escaping () -> MeterSnapshot
    ) {
        self.take = take
        self.started = started
        self.progress = progress
        intervalNanos = UInt64(interval * 1e9)
        nextTick = started &+ intervalNanos
        baseAllocated = first.reactorAllocatedBytes
        baseMemcpy = first.reactorMemcpyBytes
        last = (first.nanos, first.bytesWritten)
    }

    func seconds(_ nanos: UInt64) -> Double { Double(Int64(bitPattern: nanos &- started)) / 1e9 }

    /// Takes the periodic sample if it is due.
    func tickIfDue(_ phase: TimelineSample.Phase, now: UInt64 = EventLoop.now()) {
        guard now >= nextTick else { return }
        sample(phase)
        while nextTick <= now { nextTick &+= intervalNanos }
    }

    /// Takes a sample now (or records `snapshot`, taken by the caller at a window edge).
    func sample(_ phase: TimelineSample.Phase, event: String = "tick", snapshot given: MeterSnapshot? = nil) {
        let s = given ?? take()
        let dt = Double(Int64(bitPattern: s.nanos &- last.nanos)) / 1e9
        let sent = s.bytesWritten
        let sample = TimelineSample(
            event: event, seconds: seconds(s.nanos), phase: phase, bytesSent: sent,
            throughputBytesPerSecond: dt >= 0.0005 ? Double(sent - last.bytesSent) / dt : nil,
            reactorBytesAllocated: s.reactorAllocatedBytes.flatMap { a in baseAllocated.map { a &- $0 } },
            heap: s.heap, rss: s.memory?.rss, rssPeak: s.memory?.peak, bytesCopied: s.bytesCopied,
            memcpyBytes: s.reactorMemcpyBytes.flatMap { m in baseMemcpy.map { m &- $0 } })
        last = (s.nanos, sent)
        samples.append(sample)
        // Progress at most once a second (and at every edge), whatever the sampling rate.
        let second = Int(sample.seconds.rounded(.down))
        if event != "tick" || second != lastProgressSecond {
            lastProgressSecond = second
            progress(sample)
        }
    }
}
