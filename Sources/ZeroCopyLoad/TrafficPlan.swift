// The per-run constants every loop and connection reads on the hot path, the counters a loop hands back, and
// saturating schedule arithmetic. Values only: the plan is fixed before the first connect; counters are copied out.
import Histogram

/// What each connection does, resolved once from the configuration.
struct TrafficPlan: Sendable {
    let mode: LoadMode
    let payload: MessagePayload
    let messageBytes: Int
    /// Bytes that complete one response (the counting unit in blast; 0 in sink).
    let responseBytes: Int
    /// Messages outstanding per connection; 0 means no limit (sink).
    let window: Int
    /// Echo and request: every completed response is a latency sample.
    let tracksLatency: Bool
    /// Everything but blast sends.
    let sends: Bool
    let verify: Bool
    /// Total messages per second (open loop), or nil (closed loop).
    let rate: Double?

    init(_ c: LoadConfiguration) {
        mode = c.mode
        messageBytes = c.effectiveMessageBytes
        payload = c.payload.map { MessagePayload(bytes: $0) } ?? MessagePayload(messageBytes: c.effectiveMessageBytes)
        responseBytes = c.effectiveResponseBytes
        tracksLatency = c.mode == .echo || c.mode == .request
        window = tracksLatency ? c.effectivePipeline : 0
        sends = c.mode != .blast
        verify = c.verifies
        rate = c.rate
    }
}

/// Cumulative counters of one loop (the generator subtracts two snapshots to get a window).
struct TrafficCounters: Sendable, Equatable {
    var messagesSent = 0
    var messagesReceived = 0
    var bytesSent = 0
    var bytesReceived = 0
    /// Response-sized units of the stream with at least one wrong byte.
    var verifyErrors = 0
    var verifiedBytes = 0
    /// Blast connections the server closed (its normal end).
    var peerCloses = 0
    /// Established connections that ended before the generator closed them, by cause.
    var errors: [String: Int] = [:]

    static func + (a: Self, b: Self) -> Self {
        var s = a
        s.messagesSent += b.messagesSent
        s.messagesReceived += b.messagesReceived
        s.bytesSent += b.bytesSent
        s.bytesReceived += b.bytesReceived
        s.verifyErrors += b.verifyErrors
        s.verifiedBytes += b.verifiedBytes
        s.peerCloses += b.peerCloses
        s.errors.merge(b.errors, uniquingKeysWith: +)
        return s
    }

    /// The traffic between two snapshots (errors and verification stay cumulative: they cover the whole run).
    func traffic(since base: Self) -> Self {
        var s = self
        s.messagesSent -= base.messagesSent
        s.messagesReceived -= base.messagesReceived
        s.bytesSent -= base.bytesSent
        s.bytesReceived -= base.bytesReceived
        return s
    }
}

/// What a loop reports at each interval: cumulative counters and the histograms since the previous sample.
struct LoopSample: Sendable {
    var counters: TrafficCounters
    var latency: Histogram<UInt64>
    var rawLatency: Histogram<UInt64>
    var lag: Histogram<UInt64>
    /// CPU time of the loop's thread since it started.
    var cpuNanos: UInt64
    var openConnections: Int
    /// Open connections that neither sent nor received a byte since the window opened (stopping sample only).
    var stalledConnections: Int
    var firstVerifyError: String?
}

enum Histograms {
    /// Microseconds from 1 µs to an hour, three significant digits: the layout of every histogram of a run.
    static func make() -> Histogram<UInt64> {
        Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    }

    /// Records `micros`, clamped to the top of the range (an hour) rather than dropped.
    @inline(__always)
    static func record(_ h: inout Histogram<UInt64>, _ micros: UInt64) {
        if !h.record(micros) { h.record(h.highestTrackableValue) }
    }
}

enum Nanos {
    /// A computed time offset, saturated far beyond any run (2^62 ns, 146 years) so tiny rates cannot trap.
    @inline(__always)
    static func from(_ value: Double) -> UInt64 {
        value < 4.6e18 ? UInt64(Swift.max(0, value)) : 1 << 62
    }
}
