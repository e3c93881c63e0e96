// The percentiles a report shows, taken from one HdrHistogram (microseconds). Read-only over the histogram;
// an empty histogram has no summary (nil), never zeros that look like measurements.
import Histogram

public struct LatencySummary: Sendable, Equatable {
    public var count: UInt64
    public var min: UInt64
    public var mean: Double
    public var p50: UInt64
    public var p90: UInt64
    public var p99: UInt64
    public var p999: UInt64
    public var p9999: UInt64
    public var max: UInt64

    public init(
        count: UInt64, min: UInt64, mean: Double, p50: UInt64, p90: UInt64, p99: UInt64, p999: UInt64,
        p9999: UInt64, max: UInt64
    ) {
        self.count = count
        self.min = min
        self.mean = mean
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.p999 = p999
        self.p9999 = p9999
        self.max = max
    }

    /// nil when nothing was recorded. `exactMax`: the histogram saw the true values (a decoded one only knows
    /// buckets, and then reports the top of the highest bucket, as HdrHistogram's getMaxValue does).
    init?(_ h: Histogram<UInt64>, exactMax: Bool = true) {
        guard h.totalCount > 0 else { return nil }
        self.init(
            count: h.totalCount, min: h.min, mean: h.mean,
            p50: h.valueAtPercentile(50), p90: h.valueAtPercentile(90), p99: h.valueAtPercentile(99),
            p999: h.valueAtPercentile(99.9), p9999: h.valueAtPercentile(99.99),
            max: exactMax ? h.maxRecorded : h.max)
    }

    /// "p50 120  p90 180  p99 410  p99.9 900  p99.99 1500  max 2300"
    var line: String {
        "p50 \(p50)  p90 \(p90)  p99 \(p99)  p99.9 \(p999)  p99.99 \(p9999)  max \(max)"
    }
}
