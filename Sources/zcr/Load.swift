// `zcr load`: the load generator on the command line, and `zcr load merge` for HdrHistogram interval logs.
// Parsing and printing only; the generator is ZeroCopyLoad. Bad input is one line on stderr and exit status 2;
// a run that fails (too few connections, verify or connection errors) prints its summary, one line, and exits 1.
import ArgumentParser
import Dispatch
import Glibc
import ZeroCopyLoad

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load-test a TCP server with many connections: echo, request, sink or blast, open or closed loop.",
        discussion: """
            Connects, warms up, then measures for --duration. Latency is in microseconds (HdrHistogram); with --rate \
            it is measured from each message's intended send time (coordinated omission corrected) and also raw. \
            --pipeline defaults to 16 in echo and 1 in request; --response-bytes to the message size. Requests still \
            unanswered when the window closes are recorded with their wait. Blast needs --expect-bytes or --until-eof. \
            Exit status: 0 success, 1 failed run, 2 bad input. JSON fields: docs/load.md.
            """,
        subcommands: [Merge.self]
    )

    // Numbers are taken as text (and parsed by ZeroCopyLoad) so that "-5" or "abc" get one clear line.
    @Option(help: ArgumentHelp("Server address.", valueName: "host:port"))
    var target: String?
    @Option(parsing: .unconditional, help: "echo | request | sink | blast.")
    var mode = "echo"
    @Option(parsing: .unconditional, help: ArgumentHelp("Connections to open (10k = 10,000).", valueName: "n"))
    var connections = "10"
    @Option(parsing: .unconditional, help: ArgumentHelp("New connections per second (no limit).", valueName: "rate"))
    var connectRate: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("Give up on a connect after this long.", valueName: "duration"))
    var connectTimeout = "10s"
    @Option(parsing: .unconditional, help: ArgumentHelp("Generator loops (threads).", valueName: "n"))
    var threads = "\(LoadConfiguration.defaultThreads)"
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Measured window (10s, 500ms, 2m; default 10s).", valueName: "duration"))
    var duration: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("Unmeasured traffic first.", valueName: "duration"))
    var warmup = "0s"
    @Option(parsing: .unconditional, help: ArgumentHelp("Bytes per message (64, 4k, 1MiB).", valueName: "bytes"))
    var messageBytes = "64"
    @Option(
        help: ArgumentHelp(
            "Send this file as every message (not the built-in per-connection pattern).", valueName: "file"))
    var payloadFile: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("request: bytes per response.", valueName: "bytes"))
    var responseBytes: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("In flight per connection.", valueName: "k"))
    var pipeline: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("Messages per second in total: open loop.", valueName: "rate"))
    var rate: String?
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("blast: bytes each connection is owed; a shorter stream fails.", valueName: "bytes"))
    var expectBytes: String?
    @Flag(help: "blast: the server's close ends each stream, whatever its length (instead of --expect-bytes).")
    var untilEof = false
    @Option(
        help: ArgumentHelp(
            "Conditions the run must meet, else exit 1 (p99<5ms,max<50ms,errors=0,rate>=0.95,connections>=10k).",
            valueName: "conditions"))
    var failIf: String?
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Open loop in ramps, as k6 stages: DURATION:RATE,... from 0 (10s:1k,30s:50k,10s:0); the window is their sum.",
            valueName: "stages"))
    var rateStages: String?
    @Option(
        help: ArgumentHelp(
            "Start traffic at this wall-clock time, after connecting (RFC 3339 or Unix seconds): many generators as one.",
            valueName: "time"))
    var startAt: String?
    @Flag(help: "Check received bytes (blast: the i % 251 pattern; request: the echo). Always on in echo.")
    var verify = false
    @Flag(help: "Run with fewer connections than asked, and accept connections lost during the run.")
    var allowPartial = false
    @Option(help: ArgumentHelp("Write per-second histograms here (HdrHistogram interval log).", valueName: "file"))
    var hdrLog: String?
    @Option(help: ArgumentHelp("Write the report as JSON here (fields: docs/load.md).", valueName: "file"))
    var json: String?
    @Flag(help: "No progress lines.")
    var quiet = false
    @Option(help: ArgumentHelp("Profile the server too, at its profiling endpoint (zcr serve --profile-socket).", valueName: "path"))
    var profile: String?

    func run() throws {
        let generator: LoadGenerator
        do throws(LoadError) {
            generator = try LoadGenerator(configuration: makeConfiguration())
            if let json {
                do { try FileIO.checkWritable(json) } catch { throw LoadError("--json \(error.message)") }
            }
        } catch {
            throw Self.fail(error.message, status: 2)
        }
        // Ctrl-C ends the window early and still reports (loops inherit the blocked mask).
        let signals = Signals.blockTermination()
        DispatchQueue.global().async {
            _ = signals.wait()
            generator.stop()
        }
        // --profile: the server's verdict and allocations over the same run (Profile.swift, ServerProfile).
        var serverProfile: ServerProfile?
        if let profile {
            let c = try? makeConfiguration()
            do {
                serverProfile = try ServerProfile.start(
                    path: profile, warmup: c?.warmup ?? .zero, duration: c?.duration ?? .seconds(10), startAt: c?.startAt)
            } catch { throw Self.fail("--profile \(error)", status: 2) }
        }
        let report: LoadReport
        do {
            report = try generator.run { p in if !quiet { Output.line(p.line) } }
        } catch {
            throw Self.fail(error.message, status: 2)
        }
        Output.line(report.summary)
        if let json {
            do { try report.writeJSON(to: json) } catch { throw Self.fail("--json \(error.message)", status: 1) }
        }
        if let problem = serverProfile?.finish(loadJSON: report.json, jsonPath: json) { throw Self.fail(problem, status: 1) }
        if let failure = report.failure { throw Self.fail(failure, status: 1) }
    }

    private func makeConfiguration() throws(LoadError) -> LoadConfiguration {
        guard let target else { throw LoadError("--target HOST:PORT is required") }
        guard let m = LoadMode(rawValue: mode) else {
            throw LoadError(
                "--mode must be one of \(LoadMode.allCases.map(\.rawValue).joined(separator: ", ")), not '\(mode)'")
        }
        var c = LoadConfiguration(
            target: target, mode: m, threads: try ArgumentValues.count(threads, flag: "--threads"))
        c.connections = try ArgumentValues.count(connections, flag: "--connections")
        c.connectRate = try connectRate.map { (t: String) throws(LoadError) in
            try ArgumentValues.rate(t, flag: "--connect-rate")
        }
        c.connectTimeout = try ArgumentValues.duration(connectTimeout, flag: "--connect-timeout")
        c.duration = try ArgumentValues.duration(duration ?? "10s", flag: "--duration")
        c.warmup = try ArgumentValues.duration(warmup, flag: "--warmup")
        c.messageBytes = try ArgumentValues.size(messageBytes, flag: "--message-bytes")
        if let payloadFile {
            c.payload = try FileIO.read(payloadFile, limit: 64 << 20)
            if c.payload?.isEmpty == true { throw LoadError("--payload-file \(payloadFile) is empty") }
        }
        c.responseBytes = try responseBytes.map { (t: String) throws(LoadError) in
            try ArgumentValues.size(t, flag: "--response-bytes")
        }
        c.pipeline = try pipeline.map { (t: String) throws(LoadError) in try ArgumentValues.count(t, flag: "--pipeline")
        }
        c.rate = try rate.map { (t: String) throws(LoadError) in try ArgumentValues.rate(t, flag: "--rate") }
        c.expectBytes = try expectBytes.map { (t: String) throws(LoadError) in
            try ArgumentValues.size(t, flag: "--expect-bytes")
        }
        c.untilEOF = untilEof
        c.startAt = try startAt.map { (t: String) throws(LoadError) in
            try ArgumentValues.wallClock(t, flag: "--start-at")
        }
        if let rateStages {
            guard duration == nil else {
                throw LoadError("--duration and --rate-stages exclude each other: the stages' total is the window")
            }
            c.rateStages = try RateStage.parse(rateStages)
        }
        c.failIf = try failIf.map { (t: String) throws(LoadError) in try Threshold.parse(t) } ?? []
        c.verify = verify
        c.allowPartial = allowPartial
        c.hdrLogPath = hdrLog
        return c
    }

    /// Prints `zcr load: <message>` on stderr and returns the exit to throw.
    static func fail(_ message: String, status: Int32) -> ExitCode {
        fflush(nil)  // stdout first, so the summary comes before the error line
        let line = "zcr load: \(message)\n"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
        return ExitCode(status)
    }
}

extension Load {
    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Combine HdrHistogram interval logs (zcr load --hdr-log, from any number of machines) into one.",
            discussion: """
                Prints the merged percentiles of each tag; intervals are summed per second of wall-clock time. \
                --json FILE writes the percentiles as JSON.
                """
        )

        @Argument(help: "Interval logs to merge.") var logs: [String] = []
        @Option(name: .shortAndLong, help: "Write the merged interval log here.") var output: String?
        /// `--json FILE` is parsed by `zcr load` itself (a parent's option wins), so it is read from there.
        @ParentCommand var load: Load

        func run() throws {
            guard !logs.isEmpty else { throw Load.fail("merge: give at least one interval log", status: 2) }
            do {
                // Outputs first: a bad path fails before the logs are read.
                for path in [output, load.json].compactMap({ $0 }) { try FileIO.checkWritable(path) }
                let result = try HdrMerge.merge(paths: logs)
                Output.line(result.summary)
                if let output { try FileIO.write(result.log, to: output) }
                if let json = load.json { try FileIO.write(result.json, to: json) }
            } catch {
                throw Load.fail("merge: \(error.message)", status: 1)
            }
        }
    }
}
