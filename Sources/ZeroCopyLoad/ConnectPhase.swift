// The connect phase of a run: connects paced by --connect-rate and spread round robin over the loops, the wait
// until every attempt succeeded or failed, and the one line that says why a run cannot go on. Main thread only;
// connections report back through RunCounters and their loops, never by touching this code.
import ZeroCopyReactor

extension LoadGenerator {
    /// Starts `connections` connects (paced by `connectRate`), round robin over the loops. Returns how many were
    /// attempted (all, unless stopped).
    func connectAll(
        to address: SocketAddress, pool: ReactorPool, workers: [LoopWorker], shared: RunCounters,
        clock: inout RunClock, report: inout LoadReport, progress: (LoadProgress) -> Void
    ) -> Int {
        let c = configuration
        var failedAtOnce = 0
        for i in 0..<c.connections {
            if let rate = c.connectRate {
                let due = clock.start &+ Nanos.from(Double(i) / rate * 1e9)
                while EventLoop.now() < due && !stopping {
                    _ = wait(until: min(due, clock.nextProgress)) { false }
                    reportConnecting(shared, failedAtOnce, &clock, progress)
                }
            } else if i % 256 == 0 {
                reportConnecting(shared, failedAtOnce, &clock, progress)
            }
            if stopping { return i }
            let worker = workers[i % workers.count]
            do {
                try pool.connect(to: address, loop: i % workers.count) { worker.makeClient($0, number: i) }
            } catch {
                // socket() failed (EMFILE, ENFILE, ...): no handler will hear of it.
                report.connectErrors[FailureCauses.connect(error), default: 0] += 1
                failedAtOnce += 1
            }
        }
        return c.connections
    }

    /// Waits until every attempted connection is established or failed (each has its own connect timeout).
    func settle(
        attempted: Int, shared: RunCounters, report: inout LoadReport, clock: inout RunClock,
        progress: (LoadProgress) -> Void
    ) {
        let failedAtOnce = report.connectErrors.values.reduce(0, +)
        let deadline = EventLoop.now() + configuration.connectTimeout.nanoseconds + 5_000_000_000
        func settled() -> Bool {
            shared.established.load(ordering: .relaxed) + shared.failed.load(ordering: .relaxed) + failedAtOnce
                >= attempted
        }
        while !settled() && !stopping && EventLoop.now() < deadline {
            _ = wait(until: min(deadline, clock.nextProgress)) { settled() || stopping }
            reportConnecting(shared, failedAtOnce, &clock, progress)
        }
    }

    func reportConnecting(
        _ shared: RunCounters, _ failedAtOnce: Int, _ clock: inout RunClock,
        _ progress: (LoadProgress) -> Void
    ) {
        reportBeforeTraffic(
            .connecting, shared, errors: shared.failed.load(ordering: .relaxed) + failedAtOnce, &clock, progress)
    }

    /// nil when the connect phase allows a run; otherwise the one line that says why not.
    func connectFailure(_ r: LoadReport) -> String? {
        let causes =
            r.connectErrors.isEmpty
            ? ""
            : ": "
                + r.connectErrors
                .sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .map { "\(Format.grouped($0.value)) \(FailureCauses.explain($0.key))" }.joined(separator: ", ")
        if stopping {
            return
                "stopped during the connect phase (\(r.connectionsEstablished) of \(r.connectionsRequested) "
                + "established)"
        }
        if r.connectionsEstablished == 0 {
            return "no connection to \(r.target) was established\(causes)"
        }
        if r.connectionsEstablished < r.connectionsRequested && !configuration.allowPartial {
            return
                "only \(Format.grouped(r.connectionsEstablished)) of \(Format.grouped(r.connectionsRequested)) "
                + "connections "
                + "to \(r.target) were established\(causes) (--allow-partial accepts this)"
        }
        return nil
    }
}
