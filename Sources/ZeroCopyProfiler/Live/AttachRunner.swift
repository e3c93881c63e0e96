// `zcr profile --attach`: samples a running server's profiling endpoint over a warm-up and a window and builds the
// same report as the scenarios (window figures, verdict, timeline). It never changes the server, except that it
// asks it to reset its RSS peak (VmHWM) when the window opens; it owns only its connection.
import Glibc
import ZeroCopyReactor

/// What an attached run is told.
public struct AttachOptions: Sendable {
    public var path: String
    public var durationSeconds = 10.0
    public var warmupSeconds = 1.0
    public var thresholds = Thresholds.standard
    /// Seconds between samples; nil fits it to the window (`SampleInterval.fitting`).
    public var sampleIntervalSeconds: Double?

    public init(path: String) { self.path = path }
}

/// One connection to an endpoint: a request line out, one line of JSON back.
public final class EndpointClient {
    private let fd: Int32
    private var buffer: [UInt8] = []
    public let path: String

    /// Connects; a missing endpoint or a refused connect is one clear error.
    public init(path: String, timeoutSeconds: Int = 5) throws(ProfileError) {
        self.path = path
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw .attach("\(path) is not a usable Unix socket path")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .attach("socket: \(String(cString: strerror(errno)))") }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1))
            }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            let why =
                e == ENOENT
                ? "no profiling endpoint at \(path) (start the server with --profile-socket \(path))"
                : e == ECONNREFUSED
                    ? "nothing listens at \(path) (a stale endpoint: its server is gone)"
                    : "cannot connect to \(path): \(String(cString: strerror(e)))"
            throw .attach(why)
        }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
    }

    deinit { close(fd) }

    /// Sends `line` and returns the answer line (without its newline).
    public func request(_ line: String) throws(ProfileError) -> String {
        let out = Array((line + "\n").utf8)
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .attach("the endpoint at \(path) went away: \(String(cString: strerror(errno)))") }
            sent += n
        }
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let answer = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return answer
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { throw .attach("the endpoint at \(path) closed the connection") }
            guard n > 0 else {
                throw .attach("no answer from the endpoint at \(path): \(String(cString: strerror(errno)))")
            }
            buffer += chunk[0..<n]
        }
    }

    public func snapshot() throws(ProfileError) -> EndpointSnapshot {
        try EndpointSnapshot(json: try request("snapshot"))
    }
}

public enum AttachRunner {
    /// Attaches, warms up, measures the window and returns the report. `progress` hears samples (at most one a
    /// second, and every edge), on the calling thread.
    public static func run(
        _ options: AttachOptions, progress: (TimelineSample) -> Void = { _ in }
    ) throws(ProfileError) -> ProfileReport {
        let client = try EndpointClient(path: options.path)
        let first = try client.snapshot()
        let interval = options.sampleIntervalSeconds ?? SampleInterval.fitting(windowSeconds: options.durationSeconds)
        return try withoutActuallyEscaping(progress) { (progress) throws(ProfileError) -> ProfileReport in
            var failure: ProfileError?
            let sampler = Sampler(
                first: first.meter, started: first.meter.nanos, interval: interval, progress: progress
            ) {
                do throws(ProfileError) { return try client.snapshot().meter } catch {
                    failure = failure ?? error
                    return first.meter  // never used: the run stops at the next check
                }
            }
            sampler.sample(.warmup, event: "warmup_start", snapshot: first.meter)
            try sample(until: first.meter.nanos &+ UInt64(options.warmupSeconds * 1e9), .warmup, sampler) {
                failure
            }

            let peakReset = (try? client.request("reset-peak")) == #"{"reset_peak":true}"#
            let start = try client.snapshot()
            sampler.sample(.window, event: "window_start", snapshot: start.meter)
            try sample(until: start.meter.nanos &+ UInt64(options.durationSeconds * 1e9), .window, sampler) {
                failure
            }
            let end = try client.snapshot()
            sampler.sample(.window, event: "window_end", snapshot: end.meter)
            if let failure { throw failure }
            guard end.pid == first.pid, end.meter.loops.count == start.meter.loops.count else {
                throw .attach("the server at \(options.path) changed during the run (pid or loops)")
            }

            let sampled = sampler.samples.filter { $0.phase == .window }.compactMap { $0.rss }.max()
            let (peak, method) = ProfileRunner.peakRSS(
                reset: peakReset, start: start.meter.memory, end: end.meter.memory, sampled: sampled)
            let window = WindowFigures(
                start: start.meter, end: end.meter, durationNanos: end.meter.nanos &- start.meter.nanos, writes: 0,
                peakRSS: peak)
            let verdict = Verdict.evaluate(VerdictInput(window), thresholds: options.thresholds)
            let copyControl = end.copyControl != nil
            var allocator = end.allocator
            if allocator.statisticsAvailable && !end.allocationCountsExact {
                allocator.note =
                    "jemalloc statistics: per-thread byte counters are exact; allocation counts are not (thread "
                    + "caches are on, so the server's reactor threads share arenas' counts)."
            }
            var notes = [allocator.note]
            if !end.verifyIovecs {
                notes.append(
                    "the server runs without ReactorConfiguration.verifyIovecs, so no iovec was checked: "
                        + "turn it on (zcr serve --profile-socket does) for the iovec evidence.")
            }
            if !end.memcpyCounterPresent {
                notes.append(
                    "the server has no memcpy counter: preload it (LD_PRELOAD=.../libZeroCopyMemcpyCounter.so, "
                        + "docs/profile.md) for the memcpy evidence.")
            }
            if method == "unavailable" {
                notes.append("peak RSS inside the window is unavailable: the server could not reset VmHWM.")
            }
            if !end.allocationCountsExact && end.allocator.statisticsAvailable {
                notes.append(
                    "allocation counts are unavailable: they are exact only with thread caches off "
                        + "(start the server with MALLOC_CONF=tcache:false); byte figures are exact either way.")
            }
            var report = ProfileReport(
                scenario: nil, copyControl: copyControl, threads: end.meter.loops.count, parameters: [],
                allocator: allocator, dedicatedArenas: end.allocationCountsExact, window: window,
                windowStartSeconds: sampler.seconds(start.meter.nanos), windowEndSeconds: sampler.seconds(end.meter.nanos),
                peakRSSMethod: method, verdict: verdict, thresholds: options.thresholds,
                targets: ProfileReport.targets(for: nil, copyControl: copyControl, window: window, verdict: verdict),
                timeline: ProfileRunner.thinned(sampler.samples), notes: notes,
                memcpyCounter: MemcpyCounterInfo(
                    present: end.memcpyCounterPresent, thresholdBytes: end.memcpyThresholdBytes,
                    library: end.memcpyLibrary))
            report.attached = AttachedServer(
                path: options.path, pid: end.pid, copyControl: end.copyControl, verifyIovecs: end.verifyIovecs,
                allocationCountsExact: end.allocationCountsExact, warmupSeconds: options.warmupSeconds,
                durationSeconds: options.durationSeconds, sampleIntervalSeconds: interval)
            return report
        }
    }

    /// Samples at the sampler's interval until `deadline` (the server's monotonic clock, which is this machine's).
    private static func sample(
        until deadline: UInt64, _ phase: TimelineSample.Phase, _ sampler: Sampler,
        failure: () -> ProfileError?
    ) throws(ProfileError) {
        while true {
            if let f = failure() { throw f }
            let now = EventLoop.now()
            if now >= deadline { return }
            ProfileRunner.sleep(until: min(deadline, sampler.nextTick))
            if EventLoop.now() >= deadline { return }
            sampler.tickIfDue(phase)
        }
    }
}
