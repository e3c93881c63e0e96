// The generator's state on one loop: its connections, counters and histograms, the open-loop send schedule and the
// hiccup timer that measures how late the loop runs. Loop-confined: the generator reaches it only through
// `EventLoop.execute`/`submitAndWait`; the only cross-thread state is `RunCounters` (atomics).
import Glibc
import Histogram
import Synchronization
import ZeroCopyReactor

/// Connection counts the main thread polls while loops update them (relaxed: progress display and the settle
/// test only need each count to be eventually exact).
final class RunCounters: Sendable {
    let established = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    let open = Atomic<Int>(0)
}

final class LoopWorker: @unchecked Sendable {
    let loop: EventLoop
    let plan: TrafficPlan
    let shared: RunCounters
    /// Position of this loop among the generator's loops, to interleave their schedules.
    private let phase: Double

    // Loop only.
    var counters = TrafficCounters()
    private(set) var sending = false
    private var stopped = false
    private var clients: [LoadClient] = []
    private var openCount = 0
    private var latency = Histograms.make()
    private var rawLatency = Histograms.make()
    /// The hiccup timer's lateness (jHiccup): how late anything on this loop could run.
    private var lag = Histograms.make()
    /// Open loop: for every scheduled send, how late the loop got to it after its intended time (zero included).
    private var lateness = Histograms.make()
    private var connectErrors: [String: Int] = [:]
    private var firstVerifyError: String?
    private var firstStreamError: String?
    // Open-loop schedule: send number s of this loop is due at `scheduleStart + s * slotNanos`, and goes to
    // `paced[s % paced.count]`, so connection p's message k is send number `k * paced.count + p`.
    private var paced: [LoadClient] = []
    private var scheduleStart: UInt64 = 0
    private var slotNanos = 0.0
    /// This loop's fraction of the generator's sends (its share of the established connections).
    private var share = 1.0
    private var sequence = 0
    private var paceDeadline: UInt64 = 0
    private var hiccupDeadline: UInt64 = 0
    static let hiccupNanos: UInt64 = 1_000_000

    init(loop: EventLoop, plan: TrafficPlan, shared: RunCounters, loopCount: Int) {
        self.loop = loop
        self.plan = plan
        self.shared = shared
        phase = Double(loop.index) / Double(loopCount)
    }

    /// `number`: the connection's place in connect order (seeds its stream).
    func makeClient(_ connection: Connection, number: Int) -> any ConnectionHandler {
        LoadClient(worker: self, connection: connection, number: number)
    }

    // MARK: connection events (from LoadClient)

    func opened(_ client: LoadClient) {
        clients.append(client)
        openCount += 1
        shared.established.wrappingAdd(1, ordering: .relaxed)
        shared.open.wrappingAdd(1, ordering: .relaxed)
        // Late arrivals join a closed loop (an open-loop schedule is fixed at start). Not from inside
        // connectionOpened: the connection flushes right after it, and a flush that makes it writable again would
        // queue it for a second flush while it is still queued (see the report on the core's ready stack).
        if sending && plan.rate == nil {
            loop.scheduleTimer(after: 0) { client.pump(now: EventLoop.now()) }
        }
    }

    func closed(_ client: LoadClient, error: ReactorError?, wasEstablished: Bool) {
        guard wasEstablished else {
            connectErrors[FailureCauses.connect(error), default: 0] += 1
            shared.failed.wrappingAdd(1, ordering: .relaxed)
            return
        }
        openCount -= 1
        shared.open.wrappingSubtract(1, ordering: .relaxed)
        guard !stopped, !(error == nil && client.endedByPeer) else { return }
        count(error: FailureCauses.run(error))
    }

    func peerEnded(_ client: LoadClient) {
        guard !stopped else { return }
        if plan.mode == .blast {
            counters.peerCloses += 1
            if let owed = plan.expectBytes, client.bytesReceived < owed {
                counters.shortStreams += 1
                if firstStreamError == nil {
                    firstStreamError =
                        "connection \(client.connection.id) ended after \(Format.grouped(client.bytesReceived)) bytes"
                }
            }
        } else {
            count(error: "closed_by_peer")
        }
    }

    /// Blast with --expect-bytes: connection `client` got more bytes than it is owed (counted once).
    func streamRanLong(_ client: LoadClient, owed: Int) {
        counters.longStreams += 1
        if firstStreamError == nil {
            firstStreamError = "connection \(client.connection.id) received more than \(Format.grouped(owed)) bytes"
        }
    }

    func count(error kind: String) {
        counters.errors[kind, default: 0] += 1
    }

    func verifyFailed(connection id: UInt64, streamOffset: Int, expected: UInt8, got: UInt8) {
        counters.verifyErrors += 1
        if firstVerifyError == nil {
            firstVerifyError = "connection \(id), stream byte \(streamOffset): expected \(expected), got \(got)"
        }
    }

    // MARK: measurement

    @inline(__always)
    func recordLatency(intended: UInt64, actual: UInt64, now: UInt64) {
        Histograms.record(&latency, (now &- min(intended, now)) / 1000)
        if plan.rate != nil { Histograms.record(&rawLatency, (now &- min(actual, now)) / 1000) }
    }

    /// A send that was due at `intended` and never made (open loop, window end): only the corrected histogram.
    func recordUnsent(intended: UInt64, now: UInt64, count: Int) {
        Histograms.record(&latency, (now &- min(intended, now)) / 1000, count: UInt64(count))
    }

    /// How many of connection `position`'s messages were due by `now` on the open-loop schedule.
    func dueMessages(position p: Int, now: UInt64) -> Int {
        guard !paced.isEmpty else { return 0 }
        let due = loopDue(now: now)
        return due <= p ? 0 : (due - p - 1) / paced.count + 1
    }

    /// When connection `position`'s message `k` was meant to go out (open loop).
    @inline(__always)
    func intendedTime(position: Int, message k: Int) -> UInt64 {
        intendedTime(k &* paced.count &+ position)
    }

    // MARK: control (loop thread, through execute/submitAndWait)

    /// Starts traffic on every open connection. Open loop: this loop's share of `rate` is spread evenly over its
    /// connections, the first send of all due at `start`.
    func start(at start: UInt64, establishedTotal: Int) {
        sending = true
        guard !clients.isEmpty else { return }  // nothing to measure on an idle loop
        hiccupDeadline = EventLoop.now() &+ Self.hiccupNanos
        loop.scheduleTimer(at: hiccupDeadline) { [self] in hiccup() }
        if let rate = plan.rate {
            paced = clients.filter(\.isOpen)
            guard !paced.isEmpty else { return }
            for (p, c) in paced.enumerated() {
                c.position = p
                c.isPaced = true
            }
            share = Double(paced.count) / Double(max(1, establishedTotal))
            let loopRate = rate * share
            slotNanos = 1e9 / loopRate
            // With stages the schedule's own clock starts at `start`; a constant rate is a shifted grid.
            scheduleStart = plan.schedule == nil ? start &+ Nanos.from(phase * slotNanos) : start
            paceDeadline = scheduleStart
            loop.scheduleTimer(at: paceDeadline) { [self] in pace() }
        } else {
            let now = EventLoop.now()
            for c in clients where c.isOpen { c.pump(now: now) }
        }
    }

    /// Runs every send that is due, then sleeps until the next one.
    private func pace() {
        guard sending else { return }
        let now = EventLoop.now()
        var budget = 256  // each send is flushed (one syscall) before the loop looks at its timers again
        var next = intendedTime(sequence)
        while next <= now && budget > 0 {
            // Against the send's own intended time, never a deadline reset by falling behind.
            Histograms.record(&lateness, (now - next) / 1000)
            let client = paced[sequence % paced.count]
            client.due += 1
            client.pump(now: now)
            sequence += 1
            budget -= 1
            next = intendedTime(sequence)
        }
        // Out of budget: let the loop serve its I/O, then continue at once. A schedule that has ended asks nothing.
        guard budget == 0 || next != Self.never else { return }
        paceDeadline = budget == 0 ? now : next
        loop.scheduleTimer(at: paceDeadline) { [self] in pace() }
    }

    /// The intended time of a send the schedule never reaches (after the last stage).
    static let never = UInt64.max / 2

    /// When this loop's send number `s` is due.
    private func intendedTime(_ s: Int) -> UInt64 {
        guard let schedule = plan.schedule else { return scheduleStart &+ Nanos.from(Double(s) * slotNanos) }
        guard let t = schedule.time(ofSend: (Double(s) + phase) / share) else { return Self.never }
        return scheduleStart &+ Nanos.from(t)
    }

    /// How many of this loop's sends are due by `now`.
    private func loopDue(now: UInt64) -> Int {
        guard now >= scheduleStart else { return 0 }
        let x: Double
        if let schedule = plan.schedule {
            x = schedule.sends(by: Double(now - scheduleStart)) * share - phase
            guard x >= 0 else { return 0 }
        } else {
            guard slotNanos > 0 else { return 0 }
            x = Double(now - scheduleStart) / slotNanos
        }
        guard x < 1e15 else { return 1 << 50 }
        var due = Int(x.rounded(.down)) + 1  // sends 0...x are due
        // Rounding may put a boundary send a nanosecond either side of now: keep the schedule's own verdict.
        if due > 0 && intendedTime(due - 1) > now { due -= 1 }
        if intendedTime(due) <= now { due += 1 }
        return due
    }

    /// jHiccup on the loop: a 1 ms timer; how late it fires is how late anything else on this loop could run.
    private func hiccup() {
        guard sending else { return }
        let now = EventLoop.now()
        let late = now > hiccupDeadline ? (now - hiccupDeadline) / 1000 : 0
        if !lag.recordCorrectedValue(late, expectedInterval: Self.hiccupNanos / 1000) {
            Histograms.record(&lag, late)
        }
        hiccupDeadline = now &+ Self.hiccupNanos
        loop.scheduleTimer(at: hiccupDeadline) { [self] in hiccup() }
    }

    /// Cumulative counters and the histograms since the last sample; `stop` ends sending first, in the same step,
    /// so nothing is counted after the window closes. `openWindow` marks every connection's progress, so the
    /// stopping sample can count the connections that moved no byte in the window.
    func sample(stop: Bool, openWindow: Bool = false) -> LoopSample {
        if stop {
            sending = false
            stopped = true
        }
        if openWindow {
            let now = EventLoop.now()
            for c in clients {
                c.progressMark = c.progress
                c.owedAtMark = c.owesTraffic(now: now)
            }
        }
        var stalled = 0
        if stop {
            // Stalled: owed traffic all window (when it opened and when it closed) and moved no byte.
            let now = EventLoop.now()
            for c in clients where c.isOpen && c.progress == c.progressMark && c.owedAtMark && c.owesTraffic(now: now) {
                stalled += 1
            }
        }
        let answeredMax = latency.totalCount > 0 ? latency.maxRecorded : 0
        var tail = TailCounts()
        if stop && plan.tracksLatency {
            // Coordinated omission at the tail: what is still owed waited until now, and is recorded so.
            let now = EventLoop.now()
            for c in clients where c.isOpen { tail = tail + c.recordTail(now: now) }
        }
        var unfinished = 0
        if stop, let owed = plan.expectBytes {
            unfinished = clients.reduce(0) { $0 + ($1.isOpen && $1.bytesReceived < owed ? 1 : 0) }
        }
        var s = LoopSample(
            counters: counters, latency: latency, rawLatency: rawLatency, lag: lag, lateness: lateness,
            cpuNanos: Self.threadCPUNanos(), openConnections: openCount, stalledConnections: stalled,
            firstVerifyError: firstVerifyError, firstStreamError: firstStreamError, answeredMaxMicros: answeredMax,
            tail: tail)
        s.unfinishedStreams = unfinished
        latency = Histograms.make()
        rawLatency = Histograms.make()
        lag = Histograms.make()
        lateness = Histograms.make()
        return s
    }

    func connectFailures() -> [String: Int] { connectErrors }

    static func threadCPUNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
