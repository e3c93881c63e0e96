// What a person reads: the terminal summary of a report and the one-second progress line. Formatting only; the
// figures come from LoadReport and LoadProgress as measured, never recomputed here.

extension LoadReport {
    /// The terminal summary: what ran, what was measured, what went wrong.
    public var summary: String {
        var lines: [String] = []
        var loopText = rate.map { "open loop at \(Format.fixed($0, $0 < 10 ? 3 : 0)) msgs/s" } ?? "closed loop"
        if let stages = rateStages {
            loopText =
                "open loop in stages "
                + stages.map { "\(Format.fixed($0.duration.seconds, 1))s:\(Format.fixed($0.target, 0))" }
                .joined(separator: ",")
                + " (\(Format.fixed(rate ?? 0, 0)) msgs/s on average)"
        }
        var shape = "\(Format.grouped(messageBytes))-byte messages"
        if let p = pipeline { shape += ", pipeline \(p)" }
        if let r = responseBytes, r != messageBytes { shape += ", \(Format.grouped(r))-byte responses" }
        lines.append(
            "zcr load: \(mode.rawValue) against \(target), \(threads) thread\(threads == 1 ? "" : "s"), "
                + "\(loopText), \(shape)"
        )
        var conns =
            "  connections: \(Format.grouped(connectionsEstablished)) of \(Format.grouped(connectionsRequested)) "
            + "established"
        if !connectErrors.isEmpty { conns += " (failed: \(Self.list(connectErrors)))" }
        lines.append(conns)
        if durationSeconds > 0 {
            lines.append(
                "  window: \(Format.fixed(durationSeconds, 2)) s measured after "
                    + "\(Format.fixed(warmupSeconds, 2)) s warm-up"
            )
            lines.append(
                "  messages: \(Format.grouped(messagesSent)) sent, \(Format.grouped(messagesReceived)) received, "
                    + "\(Format.fixed(messagesPerSecond, 1)) msgs/s")
            lines.append(
                "  bytes: \(Format.bytes(Double(bytesSent))) sent, \(Format.bytes(Double(bytesReceived))) received, "
                    + "\(Format.bytes(bytesPerSecond))/s")
        }
        if let l = latency {
            let what = rate == nil ? "latency µs" : "latency µs (from intended send)"
            lines.append("  \(what): \(l.line)  (\(Format.grouped(Int(l.count))) samples)")
        }
        if let r = rawLatency { lines.append("  raw latency µs (from actual send): \(r.line)") }
        if let unanswered = unansweredAtEnd, durationSeconds > 0 {
            var t = "  unanswered at window end: \(Format.grouped(unanswered))"
            if let unsent = unsentAtEnd { t += ", due and not sent: \(Format.grouped(unsent))" }
            if let oldest = oldestUnansweredMicros { t += " (oldest waiting \(Format.grouped(Int(oldest))) µs)" }
            lines.append(t)
        }
        if verify {
            var v =
                "  verify: \(Format.bytes(Double(verifiedBytes))) checked, "
                + "\(verifyErrors) error\(verifyErrors == 1 ? "" : "s")"
            if let first = firstVerifyError { v += " (first: \(first))" }
            lines.append(v)
        }
        if durationSeconds > 0 {
            var g = "  generator:"
            if let lag = generatorLag { g += " timer hiccups p99 \(lag.p99) µs, max \(lag.max) µs;" }
            if let late = scheduleLateness { g += " sends late p99 \(late.p99) µs, max \(late.max) µs;" }
            g += " loops busy " + loopBusy.map { Format.fixed($0 * 100, 0) + "%" }.joined(separator: " ")
            g += "; \(Format.fixed(generatorCPUSeconds, 2)) CPU-s"
            if let m = messagesPerCPUSecond { g += ", \(Format.grouped(Int(m))) msgs per CPU-s" }
            lines.append(g)
        }
        if mode == .blast {
            if let owed = expectBytes {
                let whole = peerCloses - shortStreams
                var t = "  streams: \(Format.grouped(whole)) complete (\(Format.grouped(owed)) bytes each, then closed)"
                if shortStreams > 0 { t += ", \(Format.grouped(shortStreams)) ended short" }
                if longStreams > 0 { t += ", \(Format.grouped(longStreams)) ran long" }
                if let first = firstStreamError { t += " (first: \(first))" }
                lines.append(t)
            } else if peerCloses > 0 {
                lines.append("  server closed \(peerCloses) connection(s) (--until-eof: the end of each stream)")
            }
        }
        lines.append("  errors: " + (errors.isEmpty ? "none" : Self.list(errors)))
        if !thresholds.isEmpty {
            lines.append(
                "  fail-if: "
                    + thresholds.map {
                        "\($0.threshold.text) \($0.passed ? "met" : "NOT MET") (\($0.threshold.describe($0.value)))"
                    }.joined(separator: ", "))
        }
        for n in notes { lines.append("  note: \(n)") }
        for w in warnings { lines.append("  warning: \(w)") }
        if let failure { lines.append("  FAILED: \(failure)") }
        return lines.joined(separator: "\n")
    }

    /// "refused 3, timeout 1", largest first.
    static func list(_ counts: [String: Int]) -> String {
        counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { "\($0.key) \(Format.grouped($0.value))" }.joined(separator: ", ")
    }
}

/// One progress report, once per interval.
public struct LoadProgress: Sendable {
    public enum Phase: String, Sendable { case connecting, waiting, warmup, measuring }
    public var phase: Phase
    /// Seconds since the run started.
    public var elapsedSeconds: Double
    public var connectionsOpen: Int
    public var connectionsRequested: Int
    public var messagesPerSecond: Double
    public var bytesPerSecond: Double
    /// p99 of the corrected latency: over the window so far (measuring) or the last interval (warm-up).
    public var p99Micros: UInt64?
    /// Connect failures, errors and verify errors so far.
    public var errors: Int
    /// --rate-stages: the target rate at this moment of the schedule.
    public var targetPerSecond: Double?

    /// "[  3.0s] measuring  conns 1000/1000  msgs/s 123456  MB/s 7.9  p99 245 µs  errors 0"
    public var line: String {
        let p99 = p99Micros.map { "\($0) µs" } ?? "-"
        return
            "[\(Format.fixed(elapsedSeconds, 1))s] \(phase.rawValue)  "
            + "conns \(connectionsOpen)/\(connectionsRequested)  "
            + "msgs/s \(Format.fixed(messagesPerSecond, 0))  MB/s \(Format.fixed(bytesPerSecond / 1e6, 1))  "
            + "p99 \(p99)  errors \(errors)"
            + (targetPerSecond.map { "  target \(Format.fixed($0, 0))/s" } ?? "")
    }
}
