// `--fail-if EXPR`: pass/fail conditions for CI, as k6's thresholds. Parsing (one line per mistake, naming the
// condition) and evaluation against a finished report. Pure: it reads a report, never measures.

/// One condition the run must meet, e.g. `p99<5ms`: the run fails when it does not hold.
public struct Threshold: Sendable, Equatable {
    public enum Metric: String, Sendable, CaseIterable {
        case p50, p90, p99, p999, p9999, max, mean
        /// Faults: connect errors, errors during the run and verify errors, together.
        case errors
        /// Requests unanswered plus sends due and not made at window end.
        case unanswered
        /// Achieved / target send rate (open loop).
        case rate
        /// Connections established.
        case connections
        /// Completed messages per second.
        case msgsPerSecond = "msgs_per_s"

        var isLatency: Bool {
            switch self {
            case .p50, .p90, .p99, .p999, .p9999, .max, .mean: return true
            default: return false
            }
        }
    }

    public enum Comparison: String, Sendable, CaseIterable {
        case lessOrEqual = "<="
        case greaterOrEqual = ">="
        case notEqual = "!="
        case equal = "="
        case less = "<"
        case greater = ">"

        func holds(_ a: Double, _ b: Double) -> Bool {
            switch self {
            case .less: return a < b
            case .lessOrEqual: return a <= b
            case .greater: return a > b
            case .greaterOrEqual: return a >= b
            case .equal: return a == b
            case .notEqual: return a != b
            }
        }
    }

    /// The condition as written.
    public let text: String
    public let metric: Metric
    public let comparison: Comparison
    /// Microseconds for latencies, a ratio for `rate`, a count or a rate per second otherwise.
    public let limit: Double

    /// The outcome of one condition against a report.
    public struct Outcome: Sendable, Equatable {
        public let threshold: Threshold
        /// The measured value (nil: not measured, which fails the condition).
        public let value: Double?
        public var passed: Bool { value.map { threshold.comparison.holds($0, threshold.limit) } ?? false }
    }

    /// Parses `p99<5ms,max<50ms,errors=0,rate>=0.95`. Latencies need a unit (ns, us, µs, ms, s, m); `rate` is a
    /// ratio (0.95) or a percentage (95%); counts accept k and M.
    public static func parse(_ expression: String) throws(LoadError) -> [Threshold] {
        var out: [Threshold] = []
        let parts = expression.split(separator: ",", omittingEmptySubsequences: false)
        for raw in parts {
            let text = String(raw.filter { $0 != " " })
            guard !text.isEmpty else { throw LoadError("--fail-if '\(expression)': an empty condition") }
            out.append(try parseOne(text))
        }
        return out
    }

    private static func parseOne(_ text: String) throws(LoadError) -> Threshold {
        let names = Metric.allCases.map(\.rawValue).joined(separator: ", ")
        let ops = Comparison.allCases.map(\.rawValue)
        // The operator: the first of its characters; two-character ones first.
        guard let at = text.firstIndex(where: { "<>=!".contains($0) }) else {
            throw LoadError("--fail-if '\(text)': no comparison (use <, <=, >, >=, = or !=)")
        }
        let rest = text[at...]
        guard let op = ops.first(where: { rest.hasPrefix($0) }).flatMap(Comparison.init(rawValue:)) else {
            throw LoadError("--fail-if '\(text)': no comparison (use <, <=, >, >=, = or !=)")
        }
        var name = String(text[..<at]).lowercased()
        let value = String(rest.dropFirst(op.rawValue.count)).replacingEqualsPrefix()
        // k6's spelling and the summary's: p(99), p99.9, p99.99.
        if name.hasPrefix("p(") && name.hasSuffix(")") { name = "p" + name.dropFirst(2).dropLast() }
        name = ["p99.9": "p999", "p99.99": "p9999", "avg": "mean", "error": "errors"][name] ?? name
        guard let metric = Metric(rawValue: name) else {
            throw LoadError("--fail-if '\(text)': unknown metric '\(text[..<at])' (one of \(names))")
        }
        guard !value.isEmpty else { throw LoadError("--fail-if '\(text)': no value after \(op.rawValue)") }
        let limit: Double
        switch metric {
        case .p50, .p90, .p99, .p999, .p9999, .max, .mean:
            guard value.last.map({ !$0.isNumber && $0 != "." }) == true else {
                throw LoadError("--fail-if '\(text)': give the latency a unit (5ms, 500us, 1s)")
            }
            do {
                limit = Double(try ArgumentValues.duration(value, flag: "--fail-if").nanoseconds) / 1000
            } catch {
                throw LoadError("--fail-if '\(text)': '\(value)' is not a duration (examples: 5ms, 500us, 1s)")
            }
        case .rate:
            let percent = value.hasSuffix("%")
            guard let v = Double(percent ? String(value.dropLast()) : value), v.isFinite, v >= 0 else {
                throw LoadError("--fail-if '\(text)': '\(value)' is not a ratio (examples: 0.95, 95%)")
            }
            limit = percent ? v / 100 : v
        case .msgsPerSecond:
            do { limit = try ArgumentValues.rate(value, flag: "--fail-if") } catch {
                throw LoadError("--fail-if '\(text)': '\(value)' is not a rate per second (examples: 1000, 2.5k)")
            }
        case .errors, .unanswered, .connections:
            do { limit = Double(try ArgumentValues.count(value, flag: "--fail-if")) } catch {
                throw LoadError("--fail-if '\(text)': '\(value)' is not a whole number (examples: 0, 100, 10k)")
            }
        }
        return Threshold(text: text, metric: metric, comparison: op, limit: limit)
    }

    /// The measured value this condition compares, or nil when the run did not measure it.
    func value(in r: LoadReport) -> Double? {
        func latency(_ pick: (LatencySummary) -> Double) -> Double? { r.latency.map(pick) }
        switch metric {
        case .p50: return latency { Double($0.p50) }
        case .p90: return latency { Double($0.p90) }
        case .p99: return latency { Double($0.p99) }
        case .p999: return latency { Double($0.p999) }
        case .p9999: return latency { Double($0.p9999) }
        case .max: return latency { Double($0.max) }
        case .mean: return latency { $0.mean }
        case .errors:
            return Double(
                r.errors.values.reduce(0, +) + r.connectErrors.values.reduce(0, +) + r.verifyErrors + r.shortStreams
                    + r.longStreams)
        case .unanswered: return r.unansweredAtEnd.map { Double($0 + (r.unsentAtEnd ?? 0)) }
        case .rate:
            guard let target = r.rate, r.durationSeconds > 0 else { return nil }
            return Double(r.messagesSent) / r.durationSeconds / target
        case .connections: return Double(r.connectionsEstablished)
        case .msgsPerSecond: return r.durationSeconds > 0 ? r.messagesPerSecond : nil
        }
    }

    /// "7,123 µs", "0.912", "3".
    func describe(_ v: Double?) -> String {
        guard let v else { return "not measured" }
        switch metric {
        case .p50, .p90, .p99, .p999, .p9999, .max: return "\(Format.grouped(Int(v))) µs"
        case .mean: return "\(Format.fixed(v, 1)) µs"
        case .rate: return Format.fixed(v, 3)
        case .msgsPerSecond: return Format.fixed(v, 1)
        case .errors, .unanswered, .connections: return Format.grouped(Int(v))
        }
    }
}

extension LoadReport {
    /// Checks `--fail-if` against the finished report: records every outcome, and adds the conditions not met to
    /// `failure` (after the run's own reason, if any).
    mutating func evaluate(_ conditions: [Threshold]) {
        thresholds = conditions.map { Threshold.Outcome(threshold: $0, value: $0.value(in: self)) }
        let missed = thresholds.filter { !$0.passed }
        guard !missed.isEmpty else { return }
        let line =
            "--fail-if not met: "
            + missed.map { "\($0.threshold.text) (\($0.threshold.describe($0.value)))" }.joined(separator: ", ")
        failure = failure.map { "\($0); \(line)" } ?? line
    }
}

extension String {
    /// `p99<=5ms` splits as `<=` + `5ms`; a stray `=` after `=` (`errors==0`) is the same as one.
    fileprivate func replacingEqualsPrefix() -> String { hasPrefix("=") ? String(dropFirst()) : self }
}
