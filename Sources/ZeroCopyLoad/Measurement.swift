// Turns the loops' samples into the run's figures: per-interval merges (for progress and the hdr log), totals over
// the window, CPU per loop, warnings and the final verdict. Main thread only; it reads samples, never loops.
import Histogram

struct Measurement {
    /// One interval, all loops merged.
    struct Interval {
        var seconds: Double
        var counters: TrafficCounters
        var latency: Histogram<UInt64>
        var rawLatency: Histogram<UInt64>
        var lag: Histogram<UInt64>
        var lateness: Histogram<UInt64>
    }

    private(set) var report: LoadReport
    let openLoop: Bool
    private(set) var windowStart: UInt64 = 0
    /// Time of the previous sample in the window.
    var lastTick: UInt64 = 0
    private var endTime: UInt64 = 0
    private var baseline: [LoopSample] = []
    private var previous: [LoopSample] = []
    private var latency = Histograms.make()
    private var rawLatency = Histograms.make()
    private var lag = Histograms.make()
    private var lateness = Histograms.make()
    /// The longest latency of an answered request in the window (the tail's waits excluded).
    private var answeredMax: UInt64 = 0

    init(report: LoadReport, openLoop: Bool) {
        self.report = report
        self.openLoop = openLoop
    }

    mutating func begin(_ samples: [LoopSample], at now: UInt64) {
        baseline = samples
        previous = samples
        windowStart = now
        lastTick = now
        endTime = now
    }

    /// Adds one interval of the window.
    mutating func add(_ samples: [LoopSample], at now: UInt64) -> Interval {
        let interval = Self.interval(from: previous, to: samples, seconds: Double(now - lastTick) / 1e9)
        latency.add(interval.latency)
        rawLatency.add(interval.rawLatency)
        lag.add(interval.lag)
        lateness.add(interval.lateness)
        answeredMax = samples.reduce(answeredMax) { max($0, $1.answeredMaxMicros) }
        previous = samples
        endTime = now
        return interval
    }

    static func interval(from before: [LoopSample], to after: [LoopSample], seconds: Double) -> Interval {
        var i = Interval(
            seconds: seconds, counters: total(after).traffic(since: total(before)),
            latency: Histograms.make(), rawLatency: Histograms.make(), lag: Histograms.make(),
            lateness: Histograms.make())
        for s in after {
            i.latency.add(s.latency)
            i.rawLatency.add(s.rawLatency)
            i.lag.add(s.lag)
            i.lateness.add(s.lateness)
        }
        return i
    }

    static func total(_ samples: [LoopSample]) -> TrafficCounters {
        samples.reduce(TrafficCounters()) { $0 + $1.counters }
    }

    func progress(phase: LoadProgress.Phase, interval: Interval, clock: RunClock, now: UInt64, open: Int)
        -> LoadProgress
    {
        let c = interval.counters
        let s = max(interval.seconds, 1e-9)
        let completed = report.mode == .sink ? c.messagesSent : c.messagesReceived
        let p99Source = phase == .measuring ? latency : interval.latency
        return LoadProgress(
            phase: phase, elapsedSeconds: Double(now - clock.start) / 1e9, connectionsOpen: open,
            connectionsRequested: report.connectionsRequested, messagesPerSecond: Double(completed) / s,
            bytesPerSecond: Double(c.bytesSent + c.bytesReceived) / s,
            p99Micros: p99Source.totalCount > 0 ? p99Source.valueAtPercentile(99) : nil,
            errors: c.errors.values.reduce(0, +) + c.verifyErrors + report.connectErrors.values.reduce(0, +))
    }

    /// The report for the window, with warnings and the verdict.
    func finish(configuration c: LoadConfiguration) -> LoadReport {
        var r = report
        var runBytesReceived = 0
        let counters = Self.total(previous).traffic(since: Self.total(baseline))
        r.durationSeconds = Double(endTime - windowStart) / 1e9
        r.messagesSent = counters.messagesSent
        r.messagesReceived = counters.messagesReceived
        r.bytesSent = counters.bytesSent
        r.bytesReceived = counters.bytesReceived
        r.verifyErrors = counters.verifyErrors
        r.verifiedBytes = counters.verifiedBytes
        r.firstVerifyError = previous.lazy.compactMap(\.firstVerifyError).first
        r.peerCloses = counters.peerCloses
        r.shortStreams = counters.shortStreams
        r.longStreams = counters.longStreams
        r.firstStreamError = previous.lazy.compactMap(\.firstStreamError).first
        runBytesReceived = Self.total(previous).bytesReceived
        r.unfinishedStreams = previous.reduce(0) { $0 + $1.unfinishedStreams }
        r.errors = counters.errors
        r.stalledConnections = previous.reduce(0) { $0 + $1.stalledConnections }
        let tail = previous.reduce(TailCounts()) { $0 + $1.tail }
        if c.mode == .echo || c.mode == .request {
            r.unansweredAtEnd = tail.unanswered
            r.unsentAtEnd = openLoop ? tail.unsent : nil
            r.oldestUnansweredMicros = tail.unanswered + tail.unsent > 0 ? tail.oldestMicros : nil
        }
        r.latency = LatencySummary(latency)
        r.rawLatency = openLoop ? LatencySummary(rawLatency) : nil
        r.generatorLag = LatencySummary(lag)
        r.scheduleLateness = openLoop ? LatencySummary(lateness) : nil
        var cpu = 0.0
        r.loopBusy = []
        for (b, e) in zip(baseline, previous) {
            let seconds = Double(e.cpuNanos &- b.cpuNanos) / 1e9
            cpu += seconds
            r.loopBusy.append(r.durationSeconds > 0 ? min(1, seconds / r.durationSeconds) : 0)
        }
        r.generatorCPUSeconds = cpu
        addWarnings(&r, c)
        addTailWarning(&r)
        r.failure = verdict(r, c, runBytesReceived: runBytesReceived)
        r.evaluate(c.failIf)
        return r
    }

    private func addWarnings(_ r: inout LoadReport, _ c: LoadConfiguration) {
        if r.connectionsEstablished < r.connectionsRequested {
            r.notes.append(
                "ran with \(r.connectionsEstablished) of \(r.connectionsRequested) connections (--allow-partial)")
        }
        if r.durationSeconds + 0.05 < c.duration.seconds {
            r.notes.append(
                previous.allSatisfy { $0.openConnections == 0 }
                    ? "every connection had ended: the window closed after \(Format.fixed(r.durationSeconds, 2)) s"
                    : "stopped after \(Format.fixed(r.durationSeconds, 2)) s")
        }
        if r.unfinishedStreams > 0, let owed = c.expectBytes {
            r.notes.append(
                "\(Format.grouped(r.unfinishedStreams)) stream\(r.unfinishedStreams == 1 ? "" : "s") had not received "
                    + "all \(Format.grouped(owed)) bytes when the window closed (the window, not the server, ended "
                    + "\(r.unfinishedStreams == 1 ? "it" : "them"))")
        }
        if r.stalledConnections > 0 {
            r.warnings.append(
                "\(r.stalledConnections) open connection\(r.stalledConnections == 1 ? "" : "s") moved no byte "
                    + "during the window (stalled: the server stopped serving them)")
        }
        // A window of a few milliseconds (every connection ended at once) says nothing about the CPU.
        let busy = r.durationSeconds >= 0.1 ? r.loopBusy.enumerated().filter { $0.element >= 0.9 } : []
        let timersLate = (r.generatorLag?.p99 ?? 0) >= 1000
        let sendsLate = (r.scheduleLateness?.p99 ?? 0) >= 1000
        let generatorBound = !busy.isEmpty || timersLate || sendsLate
        if !busy.isEmpty {
            let which = busy.map { "loop \($0.offset) \(Format.fixed($0.element * 100, 0))%" }.joined(separator: ", ")
            r.warnings.append(
                "the generator was CPU-bound (\(which) busy): it, not the server, may be the bottleneck; "
                    + "add --threads or a second load machine")
        }
        if let lag = r.generatorLag, timersLate {
            r.warnings.append(
                "the generator's loops ran timers late (hiccups p99 \(lag.p99) µs, max \(lag.max) µs): "
                    + "latencies include the generator's own delay")
        }
        if let late = r.scheduleLateness, sendsLate {
            r.warnings.append(
                "the generator got to its scheduled sends late (p99 \(Format.grouped(Int(late.p99))) µs, max "
                    + "\(Format.grouped(Int(late.max))) µs after their intended time): it fell behind its schedule")
        }
        if let rate = c.openLoopRate, r.durationSeconds > 0 {
            let achieved = Double(r.messagesSent) / r.durationSeconds
            let digits = rate < 10 ? 3 : 0
            if rate * r.durationSeconds < 10 {
                r.notes.append(
                    "--rate \(Format.fixed(rate, digits)) over \(Format.fixed(r.durationSeconds, 2)) s: "
                        + "\(Format.fixed(rate * r.durationSeconds, 1)) sends due in the window, too few to judge the "
                        + "achieved rate (\(Format.grouped(r.messagesSent)) sent)")
            } else if achieved < 0.9 * rate {
                let why =
                    generatorBound
                    ? "the generator could not keep up"
                    : "the server (or the pipeline of \(c.effectivePipeline)) held sends back; "
                        + "corrected latency includes the wait"
                r.warnings.append(
                    "sent \(Format.fixed(achieved, digits)) msgs/s of the \(Format.fixed(rate, digits)) asked: \(why)")
            }
        }
    }

    /// A server that stopped answering late in the window: requests still waiting at its end, longer than any
    /// answered one (and at least 100 ms, so that the ordinary requests in flight never warn).
    private func addTailWarning(_ r: inout LoadReport) {
        guard let oldest = r.oldestUnansweredMicros, oldest >= 100_000, oldest > answeredMax else { return }
        let unanswered = r.unansweredAtEnd ?? 0
        let unsent = r.unsentAtEnd ?? 0
        var what = "\(Format.grouped(unanswered)) request\(unanswered == 1 ? "" : "s") unanswered"
        if unsent > 0 { what += " and \(Format.grouped(unsent)) due and not sent" }
        let answered =
            answeredMax > 0
            ? "longer than any answered (max \(Format.grouped(Int(answeredMax))) µs)" : "none was answered"
        r.warnings.append(
            "\(what) at window end, the oldest waiting \(Format.grouped(Int(oldest))) µs, \(answered): "
                + "the server stopped answering; these waits are in the latency figures")
    }

    private func verdict(_ r: LoadReport, _ c: LoadConfiguration, runBytesReceived: Int) -> String? {
        if r.verifyErrors > 0 {
            let first = r.firstVerifyError.map { " (first: \($0))" } ?? ""
            return "\(r.verifyErrors) verify error\(r.verifyErrors == 1 ? "" : "s"): the bytes received are not the "
                + "expected stream\(first)"
        }
        if !r.errors.isEmpty && !c.allowPartial {
            let n = r.errors.values.reduce(0, +)
            return
                "\(n) error\(n == 1 ? "" : "s") during the run (\(LoadReport.list(r.errors))); --allow-partial accepts "
                + "connections lost during the run"
        }
        if r.shortStreams + r.longStreams > 0, let owed = c.expectBytes {
            var what: [String] = []
            if r.shortStreams > 0 { what.append("\(Format.grouped(r.shortStreams)) ended short") }
            if r.longStreams > 0 { what.append("\(Format.grouped(r.longStreams)) ran long") }
            let first = r.firstStreamError.map { " (first: \($0))" } ?? ""
            return "blast streams owed --expect-bytes \(Format.grouped(owed)): \(what.joined(separator: ", "))\(first)"
        }
        if r.mode == .blast {
            // A whole stream may arrive before the window opens: what matters is that any did.
            if runBytesReceived == 0 { return "no byte of the stream arrived" }
        } else if r.messagesCompleted == 0 {
            return "no message completed in the window"
        }
        return nil
    }
}
