// The result of one run: every figure the summary and the JSON show, documented field by field in docs/load.md.
// Built by the generator after the window closes; it only formats (text and JSON), it never measures.

public struct LoadReport: Sendable {
    public var target: String
    public var mode: LoadMode
    /// Total messages per second asked for (open loop), nil for closed loop.
    public var rate: Double?
    /// --rate-stages as given (then `rate` is their average).
    public var rateStages: [RateStage]?
    public var connectionsRequested: Int
    public var connectionsEstablished = 0
    /// Failed connection attempts by cause ("refused", "timeout", "EMFILE", ...).
    public var connectErrors: [String: Int] = [:]
    public var threads: Int
    public var messageBytes: Int
    public var responseBytes: Int?
    public var pipeline: Int?
    public var warmupSeconds: Double
    /// Length of the measured window (shorter than asked when every connection ended or the run was stopped).
    public var durationSeconds = 0.0
    public var messagesSent = 0
    public var messagesReceived = 0
    public var bytesSent = 0
    public var bytesReceived = 0
    /// From the intended send time (coordinated omission corrected in open loop; equal to raw in closed loop).
    public var latency: LatencySummary?
    /// From the actual send time (open loop only).
    public var rawLatency: LatencySummary?
    public var verify: Bool
    public var verifyErrors = 0
    public var verifiedBytes = 0
    public var firstVerifyError: String?
    /// How late the generator's loops ran their timers (hiccup timer and open-loop sends), microseconds.
    public var generatorLag: LatencySummary?
    /// Open loop: how late the generator got to each scheduled send after its intended time (every send, zeros
    /// included), microseconds; nil in closed loop.
    public var scheduleLateness: LatencySummary?
    /// CPU time of the generator's loop threads in the window.
    public var generatorCPUSeconds = 0.0
    /// Fraction of the window each loop thread was on a CPU.
    public var loopBusy: [Double] = []
    /// Established connections that ended before the generator closed them, and other faults, by kind.
    public var errors: [String: Int] = [:]
    /// Blast connections the server closed (their normal end; with --expect-bytes, short ones too).
    public var peerCloses = 0
    /// Blast: the bytes each connection is owed (--expect-bytes), nil with --until-eof.
    public var expectBytes: Int?
    /// Blast with --expect-bytes: streams the server ended before all their bytes, and streams that ran past them.
    public var shortStreams = 0
    public var longStreams = 0
    public var firstStreamError: String?
    /// Blast with --expect-bytes: streams still open and short of B when the window closed (not a failure).
    public var unfinishedStreams = 0
    /// Connections open at the end of the window that neither sent nor received a byte during it.
    public var stalledConnections = 0
    /// Echo and request: requests sent and not answered when the window closed (their waits so far are in
    /// `latency`), nil in the other modes.
    public var unansweredAtEnd: Int?
    /// Open loop: sends that were due by the window's end and not made (their waits are in `latency`).
    public var unsentAtEnd: Int?
    /// The longest wait among those, microseconds (nil when nothing was owed).
    public var oldestUnansweredMicros: UInt64?
    public var descriptorLimit: Int
    /// `--fail-if` conditions with what was measured, in the order given.
    public var thresholds: [Threshold.Outcome] = []
    public var warnings: [String] = []
    public var notes: [String] = []
    /// Why the run failed (nil: it succeeded). Also the one line the CLI prints to stderr.
    public var failure: String?

    init(configuration c: LoadConfiguration, descriptorLimit: Int) {
        target = c.target
        mode = c.mode
        rate = c.openLoopRate
        rateStages = c.rateStages
        connectionsRequested = c.connections
        threads = c.threads
        messageBytes = c.effectiveMessageBytes
        responseBytes = c.mode == .request ? c.effectiveResponseBytes : nil
        pipeline = c.mode == .echo || c.mode == .request ? c.effectivePipeline : nil
        warmupSeconds = c.warmup.seconds
        expectBytes = c.mode == .blast ? c.expectBytes : nil
        verify = c.verifies
        self.descriptorLimit = descriptorLimit
    }

    /// Messages that completed: sent in sink mode, received (whole responses, or blast units) otherwise.
    public var messagesCompleted: Int { mode == .sink ? messagesSent : messagesReceived }

    public var messagesPerSecond: Double { durationSeconds > 0 ? Double(messagesCompleted) / durationSeconds : 0 }

    /// Bytes sent plus bytes received, per second.
    public var bytesPerSecond: Double {
        durationSeconds > 0 ? Double(bytesSent + bytesReceived) / durationSeconds : 0
    }

    public var messagesPerCPUSecond: Double? {
        generatorCPUSeconds > 0 ? Double(messagesCompleted) / generatorCPUSeconds : nil
    }

    /// 0 when the run succeeded, 1 otherwise.
    public var exitCode: Int32 { failure == nil ? 0 : 1 }

    // MARK: JSON

    public var json: String {
        var w = JSONWriter()
        w.beginObject()
        w.value("schema", "zcr-load/2")
        w.value("target", target)
        w.value("mode", mode.rawValue)
        w.value("loop", rate == nil ? "closed" : "open")
        w.value("rate_per_s", rate)
        if let stages = rateStages {
            w.beginArray("rate_stages")
            for st in stages {
                w.beginObject(nil)
                w.value("duration_s", st.duration.seconds)
                w.value("target_per_s", st.target)
                w.endObject()
            }
            w.endArray()
        } else {
            w.null("rate_stages")
        }
        w.value("connections_requested", connectionsRequested)
        w.value("connections_established", connectionsEstablished)
        w.counts("connect_errors", connectErrors)
        w.value("threads", threads)
        w.value("message_bytes", messageBytes)
        w.value("response_bytes", responseBytes)
        w.value("pipeline", pipeline)
        w.value("warmup_s", warmupSeconds)
        w.value("duration_s", durationSeconds)
        w.value("messages_sent", messagesSent)
        w.value("messages_received", messagesReceived)
        w.value("bytes_sent", bytesSent)
        w.value("bytes_received", bytesReceived)
        w.value("messages_per_s", messagesPerSecond)
        w.value("bytes_per_s", bytesPerSecond)
        Self.writeLatency(&w, "latency_us", latency)
        Self.writeLatency(&w, "raw_latency_us", rawLatency)
        w.value("verify", verify)
        w.value("verify_errors", verifyErrors)
        w.value("verified_bytes", verifiedBytes)
        w.value("first_verify_error", firstVerifyError)
        w.beginObject("generator_lag_us")
        w.value("p99", generatorLag?.p99)
        w.value("max", generatorLag?.max)
        w.value("count", generatorLag?.count)
        w.endObject()
        Self.writeLatency(&w, "schedule_lateness_us", scheduleLateness)
        w.value("generator_cpu_s", generatorCPUSeconds)
        w.beginArray("loop_busy")
        for b in loopBusy { w.value(nil, b) }
        w.endArray()
        w.value("messages_per_cpu_s", messagesPerCPUSecond, digits: 1)
        w.counts("errors", errors)
        w.value("peer_closes", peerCloses)
        w.value("expect_bytes", expectBytes)
        w.value("short_streams", shortStreams)
        w.value("long_streams", longStreams)
        w.value("first_stream_error", firstStreamError)
        w.value("unfinished_streams", unfinishedStreams)
        w.value("stalled_connections", stalledConnections)
        w.value("unanswered_at_window_end", unansweredAtEnd)
        w.value("unsent_at_window_end", unsentAtEnd)
        w.value("oldest_unanswered_us", oldestUnansweredMicros)
        w.value("descriptor_limit", descriptorLimit)
        w.beginArray("fail_if")
        for o in thresholds {
            w.beginObject(nil)
            w.value("condition", o.threshold.text)
            w.value("metric", o.threshold.metric.rawValue)
            w.value("comparison", o.threshold.comparison.rawValue)
            w.value("limit", o.threshold.limit)
            w.value("value", o.value)
            w.value("passed", o.passed)
            w.endObject()
        }
        w.endArray()
        w.beginArray("warnings")
        for line in warnings { w.value(nil, line) }
        w.endArray()
        w.beginArray("notes")
        for line in notes { w.value(nil, line) }
        w.endArray()
        w.value("failure", failure)
        w.endObject()
        return w.text + "\n"
    }

    static func writeLatency(_ w: inout JSONWriter, _ key: String, _ s: LatencySummary?) {
        guard let s else {
            w.null(key)
            return
        }
        w.beginObject(key)
        w.value("count", s.count)
        w.value("min", s.min)
        w.value("mean", s.mean, digits: 1)
        w.value("p50", s.p50)
        w.value("p90", s.p90)
        w.value("p99", s.p99)
        w.value("p999", s.p999)
        w.value("p9999", s.p9999)
        w.value("max", s.max)
        w.endObject()
    }

    public func writeJSON(to path: String) throws(LoadError) {
        try FileIO.write(json, to: path)
    }
}
