// Runs one scenario in this process: the pool as server and client on loopback, a warm-up, one measured window
// between two flushed snapshots, a sample every second, then the report. It owns the pool it creates and shuts it
// down on every path; it must never print (progress goes to the caller's closure) nor decide the exit code.
import Glibc
import ZeroCopyReactor

public enum ProfileRunner {
    /// Runs `options.scenario` to completion. `progress` hears every timeline sample, on the calling thread.
    public static func run(
        _ options: ProfileOptions,
        progress: (TimelineSample) -> Void = { _ in }
    ) throws(ProfileError) -> ProfileReport {
        // The scenario allocates and touches its payload here, before anything is measured; the timeline's clock
        // starts after it, with the pool.
        let driver = options.makeDriver()
        let runStart = EventLoop.now()
        var configuration = ReactorConfiguration(loops: options.threads)
        configuration.verifyIovecs = options.verifyIovecs
        // The pool's periodic swift-metrics export allocates on the loops once a second; it is not the write path.
        configuration.metricsIntervalNanos = nil
        let pool: ReactorPool
        do {
            pool = try ReactorPool(configuration: configuration)
        } catch {
            throw .setup("cannot start \(options.threads) loops: \(error)")
        }
        defer { pool.shutdown() }
        let meter = ReactorMeter(pool: pool)
        return try withoutActuallyEscaping(progress) { (progress) throws(ProfileError) -> ProfileReport in
            // Duration-based phases are sampled to fit their length; completion-based ones (whose length is known
            // only at the end) every 4 ms, thinned afterwards when there are too many points.
            let interval =
                options.scenario == .echo1k
                ? SampleInterval.fitting(windowSeconds: options.durationSeconds) : SampleInterval.unknownLength
            let sampler = Sampler(meter: meter, started: runStart, interval: interval, progress: progress)
            sampler.sample(.setup, event: "start")
            try driver.prepare(pool: pool)
            sampler.sample(.warmup, event: "warmup_start")
            _ = try wait(driver.startWarmUp(), phase: .warmup, sampler: sampler, driver: driver, options: options)

            // Window start: every loop flushes its own thread cache, then VmHWM is reset to VmRSS.
            let start = meter.snapshot(flushThreadCaches: true)
            let writesAtStart = driver.writes
            let peakReset = ProcessMemory.resetPeak()
            let memoryAtStart = ProcessMemory.read()
            var startSnapshot = start
            startSnapshot.memory = memoryAtStart ?? start.memory
            sampler.sample(.window, event: "window_start", snapshot: startSnapshot)
            let opened = EventLoop.now()
            let completedAt = try wait(
                driver.startWindow(), phase: .window, sampler: sampler, driver: driver, options: options)

            // Window end: the same flushed snapshot.
            let end = meter.snapshot(flushThreadCaches: true)
            let writesAtEnd = driver.writes
            sampler.sample(.window, event: "window_end", snapshot: end)
            driver.stop()

            // The kernel updates VmHWM lazily; the window's samples of VmRSS can only raise the figure.
            let sampled = sampler.samples.filter { $0.phase == .window }.compactMap { $0.rss }.max()
            let (peak, method) = peakRSS(reset: peakReset, start: memoryAtStart, end: end.memory, sampled: sampled)
            let window = WindowFigures(
                start: startSnapshot, end: end, durationNanos: (completedAt ?? end.nanos) &- opened,
                writes: writesAtEnd - writesAtStart, peakRSS: peak)
            let verdict = Verdict.evaluate(VerdictInput(window), thresholds: options.thresholds)
            return ProfileReport(
                scenario: options.scenario, copyControl: options.copyControl, threads: options.threads,
                parameters: driver.parameters, allocator: meter.allocator,
                dedicatedArenas: meter.probes.allSatisfy { $0.arena != nil }, window: window,
                windowStartSeconds: sampler.seconds(start.nanos), windowEndSeconds: sampler.seconds(end.nanos),
                peakRSSMethod: method, verdict: verdict, thresholds: options.thresholds,
                targets: ProfileReport.targets(
                    for: options.scenario, copyControl: options.copyControl, window: window,
                    verdict: verdict),
                timeline: thinned(sampler.samples), notes: notes(meter: meter, method: method),
                memcpyCounter: MemcpyCounterInfo(meter.memcpyCounter))
        }
    }

    /// Waits for a phase to end, sampling once a second. Returns the completion time for completion-based phases.
    private static func wait(
        _ end: PhaseEnd, phase: TimelineSample.Phase, sampler: Sampler, driver: any ScenarioDriver,
        options: ProfileOptions
    ) throws(ProfileError) -> UInt64? {
        let begin = EventLoop.now()
        let limit = begin &+ UInt64(options.phaseTimeoutSeconds * 1e9)
        while true {
            let now = EventLoop.now()
            let nextTick = sampler.nextTick
            switch end {
            case .completion(let done):
                if done.wait(seconds: Double(min(nextTick, limit) &- min(now, nextTick, limit)) / 1e9) {
                    if let failure = done.failure { throw .scenarioFailed(failure) }
                    return done.time
                }
            case .duration(let seconds):
                let stop = begin &+ UInt64(seconds * 1e9)
                sleep(until: min(stop, nextTick))
                if EventLoop.now() >= stop { return nil }
            }
            if let failure = driver.failure { throw .scenarioFailed(failure) }
            if EventLoop.now() >= limit {
                throw .timeout("the \(phase.rawValue) phase took more than \(Int(options.phaseTimeoutSeconds)) s")
            }
            sampler.tickIfDue(phase)
        }
    }

    /// At most about 600 points: every edge sample, and the periodic ones evenly thinned.
    static func thinned(_ samples: [TimelineSample], limit: Int = 600) -> [TimelineSample] {
        let ticks = samples.filter { $0.event == "tick" }.count
        guard ticks > limit else { return samples }
        let keepEvery = (ticks + limit - 1) / limit
        var n = 0
        return samples.filter { s in
            guard s.event == "tick" else { return true }
            defer { n += 1 }
            return n % keepEvery == 0
        }
    }

    static func sleep(until deadline: UInt64) {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
    }

    /// The peak RSS inside the window, and how it was isolated. With the reset, VmHWM at the end is the window's
    /// peak. Without it, VmHWM is still the window's peak if it rose during the window; otherwise it is unknown.
    static func peakRSS(
        reset: Bool, start: ProcessMemory?, end: ProcessMemory?, sampled: Int?
    ) -> (Int?, String) {
        guard let s = start, let e = end else { return (nil, "unavailable") }
        if reset { return (max(e.peak, sampled ?? 0), "clear_refs") }
        if e.peak > s.peak { return (max(e.peak, sampled ?? 0), "vmhwm_rose") }
        return (nil, "unavailable")
    }

    private static func notes(meter: ReactorMeter, method: String) -> [String] {
        var notes = [meter.allocator.note]
        #if DEBUG
            notes.append(
                "debug build: the core allocates a little on every loop iteration in debug builds (unspecialized "
                    + "generic code), which release builds do not; use a release build for figures.")
        #endif
        if method == "unavailable" {
            notes.append(
                "peak RSS inside the window is unavailable: /proc/self/clear_refs could not reset VmHWM "
                    + "and VmHWM did not rise."
            )
        }
        if meter.allocator.statisticsAvailable && !meter.probes.allSatisfy({ $0.arena != nil }) {
            notes.append("reactor threads could not get arenas of their own: allocation counts are unavailable.")
        }
        return notes
    }
}
