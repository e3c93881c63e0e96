// `--rate-stages '10s:1k,30s:50k,10s:0'`: an open-loop rate that ramps linearly from one target to the next, as
// k6's ramping-arrival-rate stages do (the first stage ramps from 0). Pure arithmetic over the stages: how many
// sends are due by a time, when the n-th send is due, the target at a time. Times are nanoseconds from the start.

/// One stage: over `duration`, the rate moves linearly to `target` messages per second (in total).
public struct RateStage: Sendable, Equatable {
    public var duration: Duration
    public var target: Double

    public init(duration: Duration, target: Double) {
        self.duration = duration
        self.target = target
    }

    /// "10s:1k,30s:50k,10s:0".
    public static func parse(_ text: String) throws(LoadError) -> [RateStage] {
        var stages: [RateStage] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count == 2, !fields[0].isEmpty, !fields[1].isEmpty else {
                throw LoadError("--rate-stages: '\(part)' is not DURATION:RATE (example: 10s:1k,30s:50k,10s:0)")
            }
            let d = try ArgumentValues.duration(String(fields[0]), flag: "--rate-stages")
            let target: Double
            if let v = Double(fields[1]), v < 0 {
                throw LoadError("--rate-stages: '\(part)': a target must be 0 msgs/s or more")
            }
            if let zero = Double(fields[1]), zero == 0 {  // "0", "0.0": a ramp down to nothing
                target = 0
            } else {
                target = try ArgumentValues.rate(String(fields[1]), flag: "--rate-stages")
            }
            stages.append(RateStage(duration: d, target: target))
        }
        return stages
    }
}

struct RateSchedule: Sendable {
    struct Segment: Sendable {
        var start: Double  // ns
        var length: Double  // ns
        var from: Double  // per ns
        var to: Double  // per ns
        var sendsBefore: Double
        var sends: Double { (from + to) / 2 * length }
    }

    let segments: [Segment]
    /// Sends the whole schedule asks for.
    let total: Double
    /// Its length in nanoseconds.
    let length: Double

    init(_ stages: [RateStage]) {
        var segments: [Segment] = []
        var start = 0.0
        var rate = 0.0
        var before = 0.0
        for s in stages {
            let length = Double(s.duration.nanoseconds)
            let to = s.target / 1e9
            let segment = Segment(start: start, length: length, from: rate, to: to, sendsBefore: before)
            segments.append(segment)
            before += segment.sends
            start += length
            rate = to
        }
        self.segments = segments
        total = before
        length = start
    }

    /// Messages per second asked for on average over the whole schedule.
    var averageRate: Double { length > 0 ? total / length * 1e9 : 0 }

    /// Sends due by `t` ns after the start (a real number: the n-th send is due when this reaches n).
    func sends(by t: Double) -> Double {
        guard t > 0 else { return 0 }
        guard let s = segments.last(where: { $0.start <= t }) else { return 0 }
        let tau = Swift.min(t - s.start, s.length)
        guard s.length > 0 else { return s.sendsBefore }
        let slope = (s.to - s.from) / s.length
        return s.sendsBefore + s.from * tau + slope * tau * tau / 2
    }

    /// The target rate (per second) at `t` ns after the start.
    func rate(at t: Double) -> Double {
        guard let s = segments.last(where: { $0.start <= t }), t < length, s.length > 0 else { return 0 }
        return (s.from + (s.to - s.from) * (t - s.start) / s.length) * 1e9
    }

    /// When the cumulative sends reach `n` (ns after the start), or nil if the schedule never gets there.
    func time(ofSend n: Double) -> Double? {
        guard n > 0 else { return 0 }
        guard n <= total else { return nil }
        // The segment where the cumulative count crosses n.
        var lo = 0
        var hi = segments.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if segments[mid].sendsBefore < n { lo = mid } else { hi = mid - 1 }
        }
        let s = segments[lo]
        let need = n - s.sendsBefore
        let slope = (s.to - s.from) / s.length
        // from * tau + slope/2 * tau^2 = need
        let tau: Double
        if abs(slope) < 1e-30 {
            guard s.from > 0 else { return nil }
            tau = need / s.from
        } else {
            let disc = Swift.max(0, s.from * s.from + 2 * slope * need)
            // The stable root of a/2 tau^2 + b tau - c = 0: tau = 2c / (b + sqrt(b^2 + 2ac)).
            let denominator = s.from + disc.squareRoot()
            tau = denominator > 0 ? 2 * need / denominator : (2 * need / slope).squareRoot()
        }
        return s.start + Swift.min(Swift.max(0, tau), s.length)
    }
}
