// The run: resolve, raise the descriptor limit, connect, start traffic on every loop at once, warm up, measure in
// intervals (merging the loops' histograms, writing the hdr log), stop, report. Runs on the caller's thread and
// reaches loops only through execute/submitAndWait; it never touches a connection itself.
import Glibc
import Histogram
import Synchronization
import ZeroCopyReactor

public final class LoadGenerator: Sendable {
    public let configuration: LoadConfiguration
    private let stopRequested = Atomic<Bool>(false)

    /// Validates the configuration (bad input throws one line).
    public init(configuration: LoadConfiguration) throws(LoadError) {
        try configuration.validate()
        self.configuration = configuration
    }

    /// Ends a running `run` early (from any thread): the window closes now and the report covers what was measured.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
    }

    var stopping: Bool { stopRequested.load(ordering: .relaxed) }

    /// Runs the load and returns its report. Throws only when the run cannot start (bad target, unwritable log,
    /// no loops); everything that goes wrong once connecting began is in the report (`failure`, `errors`).
    public func run(progress: (LoadProgress) -> Void = { _ in }) throws(LoadError) -> LoadReport {
        let c = configuration
        if let at = c.startAt {
            let now = Self.wallClock()
            guard at > now else {
                throw LoadError("--start-at \(Format.fixed(at, 3)) is \(Format.fixed(now - at, 1)) s in the past")
            }
            guard at - now <= 86_400 else { throw LoadError("--start-at is more than 24 hours away") }
        }
        let address = try Target.resolve(c.target)
        let (limit, limitNote) = DescriptorLimit.raise(toFit: c.connections + c.extraDescriptors + 64)
        var report = LoadReport(configuration: c, descriptorLimit: limit)
        if let limitNote { report.notes.append(limitNote) }
        let log = try c.hdrLogPath.map { (p: String) throws(LoadError) in try HdrLogWriter(path: p) }

        // A loop without a connection would only burn CPU on its hiccup timer.
        let loops = min(c.threads, c.connections)
        if loops < c.threads { report.notes.append("\(loops) thread\(loops == 1 ? "" : "s"): no more than connections") }
        report.threads = loops
        var rc = ReactorConfiguration(loops: loops)
        rc.connectTimeoutNanos = c.connectTimeout.nanoseconds
        rc.logger.logLevel = .warning  // the pool's start/stop notices would interleave with the progress lines
        let pool: ReactorPool
        do { pool = try ReactorPool(configuration: rc) } catch {
            throw LoadError("cannot start the generator's \(loops) loops: \(error)")
        }
        let shared = RunCounters()
        let plan = TrafficPlan(c)
        let workers = pool.loops.map { LoopWorker(loop: $0, plan: plan, shared: shared, loopCount: pool.loops.count) }
        defer {
            // Connections hold their worker unowned: keep the workers until every loop has stopped.
            pool.shutdown(timeoutNanos: 2_000_000_000)
            withExtendedLifetime(workers) {}
        }
        var clock = RunClock(start: EventLoop.now(), interval: c.interval.nanoseconds)

        // Connect phase.
        let attempted = connectAll(
            to: address, pool: pool, workers: workers, shared: shared, clock: &clock,
            report: &report, progress: progress)
        settle(attempted: attempted, shared: shared, report: &report, clock: &clock, progress: progress)
        for w in workers {
            let failures = w.loop.submitAndWait { w.connectFailures() } ?? [:]
            report.connectErrors.merge(failures, uniquingKeysWith: +)
        }
        let established = shared.established.load(ordering: .relaxed)
        report.connectionsEstablished = established
        let settled = established + report.connectErrors.values.reduce(0, +)
        if settled < attempted { report.connectErrors["timeout", default: 0] += attempted - settled }
        if attempted < c.connections { report.connectErrors["not_attempted", default: 0] += c.connections - attempted }
        if let failure = connectFailure(report) {
            report.failure = failure
            report.evaluate(c.failIf)
            return report
        }

        // Traffic, warm-up, window. With --start-at, traffic starts at that wall-clock instant (every generator
        // given the same one starts together), and the log's times are the intended ones.
        var start = EventLoop.now() + 2_000_000
        var intendedStart: Double?
        if let at = c.startAt {
            let ahead = at - Self.wallClock()
            if ahead > 0.002 {
                start = EventLoop.now() &+ UInt64(ahead * 1e9)
                intendedStart = at
                waitForStart(until: start - 1_000_000, shared: shared, clock: &clock, progress: progress)
            } else {
                report.warnings.append(
                    "traffic started \(Format.fixed(-ahead, 3)) s after --start-at (the connect phase took longer): "
                        + "start later, or connect faster")
            }
        }
        let t0 = start
        for w in workers { w.loop.execute { w.start(at: t0, establishedTotal: established) } }
        var measure = Measurement(report: report, openLoop: c.openLoopRate != nil)
        let schedule = c.rateStages.map(RateSchedule.init)
        warmUp(
            until: t0 + c.warmup.nanoseconds, workers: workers, shared: shared, clock: &clock,
            measure: &measure, progress: progress)
        let baseline = sampleAll(workers, stop: false, openWindow: true)
        measure.begin(baseline, at: EventLoop.now())
        // Absolute times: the wall clock of the window's start (intended with --start-at, so logs from many
        // generators share it), and each interval's offset from it as measured.
        let windowWall = Self.wallClock() - Double(EventLoop.now() &- measure.windowStart) / 1e9
        let logStart = intendedStart.map { $0 + c.warmup.seconds } ?? windowWall
        log?.begin(
            startTime: logStart,
            comment: "zcr load \(c.mode.rawValue) \(c.target), "
                + "\(c.connections) connections; values in microseconds; untagged = latency, Tag=raw, "
                + "Tag=lag (hiccups), Tag=sched (send lateness)")
        let windowEnd = measure.windowStart + c.duration.nanoseconds
        var next = measure.windowStart + clock.interval
        while true {
            let deadline = min(next, windowEnd)
            let early = wait(until: deadline) { stopping || shared.open.load(ordering: .relaxed) == 0 }
            let final = early || deadline >= windowEnd
            let now = EventLoop.now()
            let samples = sampleAll(workers, stop: final)
            let interval = measure.add(samples, at: now)
            if let log {
                let start = Double(measure.lastTick - measure.windowStart) / 1e9 + (windowWall - logStart)
                try log.append(tag: nil, start: start, length: interval.seconds, histogram: interval.latency)
                if c.openLoopRate != nil {
                    try log.append(tag: "raw", start: start, length: interval.seconds, histogram: interval.rawLatency)
                }
                try log.append(tag: "lag", start: start, length: interval.seconds, histogram: interval.lag)
                if c.openLoopRate != nil {
                    try log.append(tag: "sched", start: start, length: interval.seconds, histogram: interval.lateness)
                }
                log.flush()
            }
            measure.lastTick = now
            var p = measure.progress(
                phase: .measuring, interval: interval, clock: clock, now: now,
                open: shared.open.load(ordering: .relaxed))
            p.targetPerSecond = schedule?.rate(at: Double(now &- t0))
            progress(p)
            if final { break }
            next += clock.interval
        }
        report = measure.finish(configuration: c)
        do {
            try log?.close()
        } catch {
            // The log is part of what was asked for: a log that could not be written fails the run.
            if report.failure == nil { report.failure = error.message } else { report.warnings.append(error.message) }
        }
        return report
    }

    // MARK: phases

    private func warmUp(
        until end: UInt64, workers: [LoopWorker], shared: RunCounters, clock: inout RunClock,
        measure: inout Measurement, progress: (LoadProgress) -> Void
    ) {
        var last = sampleAll(workers, stop: false)
        var lastTime = EventLoop.now()
        while EventLoop.now() < end && !stopping {
            _ = wait(until: min(end, lastTime + clock.interval)) { stopping }
            let now = EventLoop.now()
            guard now - lastTime >= clock.interval || now >= end else { continue }
            let samples = sampleAll(workers, stop: false)
            let interval = Measurement.interval(from: last, to: samples, seconds: Double(now - lastTime) / 1e9)
            progress(
                measure.progress(
                    phase: .warmup, interval: interval, clock: clock, now: now,
                    open: shared.open.load(ordering: .relaxed)))
            last = samples
            lastTime = now
        }
    }

    /// The wait between connecting and --start-at, with a progress line per interval.
    private func waitForStart(
        until deadline: UInt64, shared: RunCounters, clock: inout RunClock, progress: (LoadProgress) -> Void
    ) {
        while EventLoop.now() < deadline && !stopping {
            _ = wait(until: min(deadline, clock.nextProgress)) { stopping }
            reportBeforeTraffic(.waiting, shared, errors: 0, &clock, progress)
        }
    }

    /// A progress line before any traffic (connecting, or waiting for --start-at), when one is due.
    func reportBeforeTraffic(
        _ phase: LoadProgress.Phase, _ shared: RunCounters, errors: Int, _ clock: inout RunClock,
        _ progress: (LoadProgress) -> Void
    ) {
        let now = EventLoop.now()
        guard now >= clock.nextProgress else { return }
        clock.nextProgress = now + clock.interval
        progress(
            LoadProgress(
                phase: phase, elapsedSeconds: Double(now - clock.start) / 1e9,
                connectionsOpen: shared.open.load(ordering: .relaxed), connectionsRequested: configuration.connections,
                messagesPerSecond: 0, bytesPerSecond: 0, p99Micros: nil, errors: errors))
    }

    private func sampleAll(_ workers: [LoopWorker], stop: Bool, openWindow: Bool = false) -> [LoopSample] {
        workers.compactMap { w in w.loop.submitAndWait { w.sample(stop: stop, openWindow: openWindow) } }
    }

    /// Sleeps until `deadline` in steps of at most 20 ms; returns true early when `done()` becomes true.
    func wait(until deadline: UInt64, _ done: () -> Bool) -> Bool {
        while true {
            if done() { return true }
            let now = EventLoop.now()
            if now >= deadline { return false }
            let step = min(deadline - now, 20_000_000)
            var ts = timespec(tv_sec: Int(step / 1_000_000_000), tv_nsec: Int(step % 1_000_000_000))
            _ = nanosleep(&ts, nil)  // EINTR just means an early look at the clock
        }
    }

    static func wallClock() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// The run's start and the progress cadence (main thread only).
struct RunClock {
    let start: UInt64
    let interval: UInt64
    var nextProgress: UInt64

    init(start: UInt64, interval: UInt64) {
        self.start = start
        self.interval = interval
        nextProgress = start + interval
    }
}
