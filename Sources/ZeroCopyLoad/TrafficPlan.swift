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
    /// Total messages per second (open loop; the average with stages), or nil (closed loop).
    let rate: Double?
    /// Open loop with --rate-stages: the ramping schedule (nil: a constant `rate`).
    let schedule: RateSchedule?
    /// Blast: bytes each connection is owed (nil with --until-eof).
    let expectBytes: Int?

    init(_ c: LoadConfiguration) {
        mode = c.mode
        messageBytes = c.effectiveMessageBytes
        payload =
            c.payload.map { MessagePayload(bytes: $0) }
            ?? MessagePayload(messageBytes: c.effectiveMessageBytes, distinct: c.mode != .blast)
        responseBytes = c.effectiveResponseBytes
        tracksLatency = c.mode == .echo || c.mode == .request
        window = tracksLatency ? c.effectivePipeline : 0
        sends = c.mode != .blast
        verify = c.verifies
        rate = c.openLoopRate
        schedule = c.rateStages.map(RateSchedule.init)
        expectBytes = c.mode == .blast ? c.expectBytes : nil
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
    /// Blast with --expect-bytes: streams the server ended before their bytes were all sent, and streams that ran
    /// past them (each counted once, whole run).
    var shortStreams = 0
    var longStreams = 0
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
        s.shortStreams += b.shortStreams
        s.longStreams += b.longStreams
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
    /// The hiccup timer's lateness.
    var lag: Histogram<UInt64>
    /// Open loop: lateness of every scheduled send against its intended time.
    var lateness: Histogram<UInt64>
    /// CPU time of the loop's thread since it started.
    var cpuNanos: UInt64
    var openConnections: Int
    /// Open connections that neither sent nor received a byte since the window opened (stopping sample only).
    var stalledConnections: Int
    var firstVerifyError: String?
    /// Blast with --expect-bytes: the first stream that ended short or ran long.
    var firstStreamError: String?
    /// The window's tail (stopping sample only): requests sent and not answered, sends due and not made, and the
    /// longest of their waits in microseconds. Their waits are in `latency` (and the sent ones in `rawLatency`).
    /// Blast with --expect-bytes: open connections short of their bytes (stopping sample only).
    var unfinishedStreams = 0
    /// The longest latency of a response answered in this sample (before the tail was recorded).
    var answeredMaxMicros: UInt64 = 0
    var tail = TailCounts()
}

/// What was still owed when the window closed.
struct TailCounts: Sendable, Equatable {
    var unanswered = 0
    var unsent = 0
    var oldestMicros: UInt64 = 0

    static func + (a: Self, b: Self) -> Self {
        TailCounts(
            unanswered: a.unanswered + b.unanswered, unsent: a.unsent + b.unsent,
            oldestMicros: Swift.max(a.oldestMicros, b.oldestMicros))
    }
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

    static func record(_ h: inout Histogram<UInt64>, _ micros: UInt64, count: UInt64) {
        if !h.record(micros, count: count) { h.record(h.highestTrackableValue, count: count) }
    }
}

enum Nanos {
    /// A computed time offset, saturated far beyond any run (2^62 ns, 146 years) so tiny rates cannot trap.
    @inline(__always)
    static func from(_ value: Double) -> UInt64 {
        value < 4.6e18 ? UInt64(Swift.max(0, value)) : 1 << 62
    }
}
