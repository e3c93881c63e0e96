// `zcr profile`: runs one allocation-profiling scenario in this process and prints the verdict, with optional JSON
// and HTML reports. Parsing and printing only; the profiler is ZeroCopyProfiler. Exit status: 0 whatever the verdict,
// 1 with --require-zero-copy and a false verdict, 2 for a run that could not finish, 64 for a bad command line.
import ArgumentParser
import Glibc
import ZeroCopyProfiler
import ZeroCopyReactor

#if ZCR_MEMCPY_COUNTER
    import CZeroCopyMemcpyCounter
#endif

/// zcr carries the memcpy counter (linked in, so its memcpy and memmove interpose on every library of the process).
/// Its own symbols are not exported, so the profiler is handed them: every profile of zcr has the memcpy figure.
/// Sanitizer builds (ZCR_JEMALLOC=0) leave it out (Package.swift): then nothing is registered and the figure is
/// unavailable.
enum LinkedMemcpyCounter {
    static func register() {
        #if ZCR_MEMCPY_COUNTER
            MemcpyCounter.useLinked(
                thread: { UnsafeMutableRawPointer(zcr_memcpy_counter_thread()) },
                threshold: { zcr_memcpy_counter_threshold() },
                totals: { zcr_memcpy_counter_totals($0) })
        #endif
    }
}

struct Profile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prove that no bytes are copied: jemalloc statistics over a loopback scenario, with a verdict.",
        discussion: """
            Runs the scenario on loopback (the reactor pool as server and client), warms up, measures one window, \
            samples once a second, and prints a summary. zero_copy is true only when the reactor threads allocated at \
            most 0.001 bytes per byte sent, the library copied nothing and every iovec lay inside the caller's slices. \
            Scenarios: seed-large, seed-gather, small-many, echo-1k. JSON fields: docs/profile.md.
            """
    )

    @Option(help: "seed-large | seed-gather | small-many | echo-1k.") var scenario: String?
    @Option(
        help: ArgumentHelp(
            "Profile a running server through its profiling endpoint (zcr serve --profile-socket PATH) instead of a "
                + "scenario: --duration and --warmup set the window.", valueName: "path"))
    var attach: String?
    @Option(help: "Loops (reactor threads), server and client together.") var threads = 2
    @Option(help: "Write the report as JSON here.") var json: String?
    @Option(help: "Write the HTML report here (one self-contained file).") var report: String?
    @Flag(help: "Copy every write into a new buffer first (Connection.writeCopying): the report must catch it.")
    var copyControl = false
    @Flag(help: "Exit 1 when the verdict is not zero copy (for CI gates).") var requireZeroCopy = false
    @Option(help: "The verdict's limit on bytes allocated by the reactor threads per byte sent.")
    var maxAllocatedBytesPerByte = Thresholds.standard.maxAllocatedBytesPerByteSent
    @Option(help: "seed-large, seed-gather: payload in MiB.") var payloadMib = 1000
    @Option(help: "small-many: number of 64-byte messages.") var messages = 16 << 20
    @Option(help: "echo-1k: connections.") var connections = 1000
    @Option(help: "echo-1k, --attach: measured seconds.") var duration = 10.0
    @Option(help: "echo-1k, --attach: warm-up seconds.") var warmup = 1.0
    @Option(help: "The verdict's limit on bytes memcpy'd on the reactor threads per byte sent.")
    var maxMemcpyBytesPerByte = Thresholds.standard.maxMemcpyBytesPerByteSent
    @Flag(help: "echo-1k: serve with the async face (ReactorPool.serve) instead of the callback handler.")
    var asyncServer = false
    @Flag(help: "No progress lines.") var quiet = false
    @Flag(
        help: ArgumentHelp(
            "Measure known work (allocations on a loop thread) and print the figures as JSON.",
            visibility: .hidden))
    var selfTest = false
    @Option(help: ArgumentHelp("--self-test: allocations.", visibility: .hidden)) var selfTestCount = 1000
    @Option(help: ArgumentHelp("--self-test: bytes per allocation.", visibility: .hidden)) var selfTestBytes = 4096

    func validate() throws {
        if selfTest {
            guard selfTestCount >= 1, selfTestBytes >= 1 else {
                throw ValidationError("--self-test-* must be at least 1")
            }
            return
        }
        guard duration > 0, duration <= 86400, warmup >= 0, warmup <= 86400 else {
            throw ValidationError("--duration must be positive, --warmup not negative (both at most 86400 s)")
        }
        guard maxMemcpyBytesPerByte >= 0 else {
            throw ValidationError("--max-memcpy-bytes-per-byte must not be negative")
        }
        if attach != nil {
            guard scenario == nil else { throw ValidationError("--attach and --scenario exclude each other") }
            guard !copyControl else {
                throw ValidationError("--copy-control is the scenarios'; start the server with its own copy control")
            }
            guard maxAllocatedBytesPerByte >= 0 else {
                throw ValidationError("--max-allocated-bytes-per-byte must not be negative")
            }
            return
        }
        guard let name = scenario else {
            throw ValidationError("--scenario or --attach is required: \(Self.names)")
        }
        guard ScenarioName(rawValue: name) != nil else {
            throw ValidationError("unknown scenario '\(name)': \(Self.names)")
        }
        guard threads >= 1 && threads <= 64 else { throw ValidationError("--threads must be 1...64") }
        guard payloadMib >= 1 else { throw ValidationError("--payload-mib must be at least 1") }
        guard messages >= 1 else { throw ValidationError("--messages must be at least 1") }
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
        guard duration > 0, warmup >= 0 else {
            throw ValidationError("--duration must be positive, --warmup not negative")
        }
        guard maxAllocatedBytesPerByte >= 0 else {
            throw ValidationError("--max-allocated-bytes-per-byte must not be negative")
        }
    }

    static var names: String { ScenarioName.allCases.map(\.rawValue).joined(separator: ", ") }

    func run() throws {
        LinkedMemcpyCounter.register()
        if selfTest {
            do {
                print(try KnownWork.run(count: selfTestCount, byteCount: selfTestBytes).json(), terminator: "")
            } catch {
                throw Self.fail("\(error)")
            }
            return
        }
        // Files are checked before any work, not after it.
        for (flag, path) in [("--json", json), ("--report", report)] {
            if let path, let problem = Output.unwritable(path) { throw Self.fail("\(flag) \(path): \(problem)") }
        }
        var thresholds = Thresholds.standard
        thresholds.maxAllocatedBytesPerByteSent = maxAllocatedBytesPerByte
        thresholds.maxMemcpyBytesPerByteSent = maxMemcpyBytesPerByte
        if let attach {
            var options = AttachOptions(path: attach)
            options.durationSeconds = duration
            options.warmupSeconds = warmup
            options.thresholds = thresholds
            let result: ProfileReport
            do {
                result = try AttachRunner.run(options) { sample in if !quiet { Output.line(sample.progressLine) } }
            } catch {
                throw Self.fail("\(error)")
            }
            try finish(result)
            return
        }
        var options = ProfileOptions(scenario: ScenarioName(rawValue: scenario!)!)
        options.copyControl = copyControl
        options.threads = threads
        options.payloadBytes = payloadMib << 20
        options.messages = messages
        options.connections = connections
        options.durationSeconds = duration
        options.warmupSeconds = warmup
        options.asyncServer = asyncServer
        options.thresholds = thresholds
        if let problem = options.memoryProblem() { throw Self.fail(problem) }
        if options.scenario == .echo1k { Self.raiseDescriptorLimit(needed: 2 * connections + 64) }

        let result: ProfileReport
        do {
            result = try ProfileRunner.run(options) { sample in if !quiet { Output.line(sample.progressLine) } }
        } catch {
            throw Self.fail("\(error)")
        }
        try finish(result)
    }

    private func finish(_ result: ProfileReport) throws {
        Output.line(result.summary)
        if let json { try Self.write(result.json(), to: json) }
        if let report { try Self.write(result.html(), to: report) }
        if requireZeroCopy && !result.zeroCopy { throw ExitCode(1) }
    }

    /// Each connection of the loopback pair costs two descriptors; raise the soft limit as far as needed and allowed.
    private static func raiseDescriptorLimit(needed: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(needed) else { return }
        limit.rlim_cur = min(limit.rlim_max, rlim_t(needed))
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    private static func write(_ text: String, to path: String) throws {
        guard let file = fopen(path, "w") else {
            throw fail("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var text = text
        let ok = text.withUTF8 { fwrite($0.baseAddress, 1, $0.count, file) == $0.count }
        guard ok else { throw fail("cannot write \(path)") }
    }

    /// One line on stderr, exit status 2.
    private static func fail(_ message: String) -> ExitCode {
        let line = "zcr profile: \(message)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
        return ExitCode(2)
    }
}

/// `zcr load --profile PATH`: the server's side of a load run. Attaches to the server's profiling endpoint on a
/// thread of its own while the load runs (warm-up: until --start-at, if given, then the load's, plus a quarter
/// second for connecting; window: the load's duration), then puts the verdict and allocation figures into the load's summary and JSON
/// (`server_profile`: the `zcr profile --attach` report, docs/profile.md).
final class ServerProfile: @unchecked Sendable {
    // Written by the attaching thread before it ends; read only after joining it.
    private var result: Result<ProfileReport, ProfileError>?
    private var thread: UInt = 0

    /// Checks that the endpoint answers (before any load), then starts attaching.
    /// With `startAt` (wall-clock seconds, `--start-at`), the warm-up also waits for the traffic to start.
    static func start(
        path: String, warmup: Duration, duration: Duration, startAt: Double? = nil
    ) throws(ProfileError) -> ServerProfile {
        _ = try EndpointClient(path: path).snapshot()
        var options = AttachOptions(path: path)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let wait = startAt.map { max(0, $0 - (Double(now.tv_sec) + Double(now.tv_nsec) / 1e9)) } ?? 0
        options.warmupSeconds = wait + seconds(warmup) + 0.25
        options.durationSeconds = max(0.1, seconds(duration))
        let profile = ServerProfile()
        profile.thread = PosixThread.spawn(name: "zcr-attach", joinable: true) {
            profile.result = Result { () throws(ProfileError) in try AttachRunner.run(options) }
        }
        return profile
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// Waits for the attached window to end; prints the server's figures, and merges them into the load's JSON.
    func finish(loadJSON: String, jsonPath: String?) -> String? {
        PosixThread.join(thread)
        switch result {
        case .success(let report)?:
            let w = report.window
            Output.line(
                "server (\(report.attached?.path ?? "?")): zero copy \(report.zeroCopy ? "YES" : "NO")"
                    + (report.zeroCopy ? "" : " (\(report.verdict.reason))")
                    + ", allocated \(ratio(w.allocatedBytesPerByteSent)) and memcpy'd "
                    + "\(ratio(w.memcpyBytesPerByteSent)) bytes per byte sent, "
                    + "\(w.throughputBytesPerSecond.map { Output.fixed($0 / 1e6) + " MB/s" } ?? "unavailable") sent")
            guard let jsonPath else { return nil }
            guard let close = loadJSON.lastIndex(of: "}") else { return "the load report is not a JSON object" }
            let merged = loadJSON[..<close] + ",\n\"server_profile\": " + report.json() + "}\n"
            return Output.write(String(merged), to: jsonPath)
        case .failure(let error)?: return "--profile: \(error)"
        case nil: return "--profile: the attached run did not finish"
        }
    }

    private func ratio(_ v: Double?) -> String { v.map { $0 == 0 ? "0" : Output.fixed($0, 6) } ?? "unavailable" }
}
