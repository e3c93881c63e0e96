// What one `zcr load` run does: target, mode, connections, pacing, sizes, outputs. Plain values, checked once by
// `validate()` with one-line messages that name the command-line flag; nothing here opens sockets or files.
import Glibc

/// How the generator talks to the server.
public enum LoadMode: String, Sendable, CaseIterable {
    /// Sends M-byte messages, up to `pipeline` outstanding, verifies the echoed bytes, measures each round trip.
    case echo
    /// Request/response: `pipeline` requests outstanding (default 1), responses counted by `responseBytes`.
    case request
    /// Sends only.
    case sink
    /// Reads only; with `verify`, checks the `i % 251` stream of `zcr serve --mode blast`.
    case blast
}

public struct LoadConfiguration: Sendable {
    /// "HOST:PORT": numeric IPv4/IPv6 ("[::1]:7000"), "localhost", or a name resolved once at start.
    public var target: String
    public var mode: LoadMode
    public var connections = 10
    /// New connections per second (nil: as fast as the loops open them).
    public var connectRate: Double?
    public var connectTimeout: Duration = .seconds(10)
    /// Loops (threads) of the generator.
    public var threads: Int
    /// The measured window, after the connect phase and the warm-up.
    public var duration: Duration = .seconds(10)
    public var warmup: Duration = .zero
    /// Bytes per message (request size in `request` mode; the counting unit in `blast` mode).
    public var messageBytes = 64
    /// Every message is these bytes instead of the built-in `i % 251` pattern (sets `messageBytes`).
    public var payload: [UInt8]?
    /// `request` mode: bytes per response (default: `messageBytes`, what an echo server returns).
    public var responseBytes: Int?
    /// Messages outstanding per connection (default: 16 in `echo`, 1 in `request`).
    public var pipeline: Int?
    /// Messages per second in total, open loop (nil: closed loop at full speed).
    public var rate: Double?
    /// Open loop whose rate ramps from stage to stage (k6 stages, from 0); the window is their total length, so
    /// `duration` is set from them. Excludes `rate`.
    public var rateStages: [RateStage]? {
        didSet { if let s = rateStages { duration = s.reduce(.zero) { $0 + $1.duration } } }
    }

    /// The open-loop rate in effect: `rate`, or the stages' average; nil in closed loop.
    public var openLoopRate: Double? {
        if let rate { return rate }
        return rateStages.map { RateSchedule($0).averageRate }
    }
    /// `blast`: the bytes each connection is owed; a stream the server ends before (or runs past) fails the run.
    public var expectBytes: Int?
    /// `blast`: the server's close ends each stream, whatever its length (instead of `expectBytes`).
    public var untilEOF = false
    /// Wall-clock seconds since the epoch at which traffic starts (after the connect phase), so that generators
    /// on many machines start together; nil: as soon as connected.
    public var startAt: Double?
    /// `--fail-if`: conditions the run must meet (the run fails, naming each one not met).
    public var failIf: [Threshold] = []
    /// Checks received bytes (always on in `echo`).
    public var verify = false
    /// Accept fewer established connections than asked (and connections lost during the run).
    public var allowPartial = false
    /// Writes per-interval histograms in the HdrHistogram interval log format.
    public var hdrLogPath: String?
    /// Descriptors this process needs besides the generator's own (for an in-process server, say).
    public var extraDescriptors = 0
    /// Spacing of progress callbacks and of hdr-log intervals.
    public var interval: Duration = .seconds(1)

    public init(target: String, mode: LoadMode = .echo, threads: Int = LoadConfiguration.defaultThreads) {
        self.target = target
        self.mode = mode
        self.threads = threads
    }

    public static var defaultThreads: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// The message size in effect (the payload's size when there is one).
    public var effectiveMessageBytes: Int { payload?.count ?? messageBytes }

    /// Outstanding messages per connection in effect.
    public var effectivePipeline: Int { pipeline ?? (mode == .request ? 1 : 16) }

    /// Bytes per response in effect (0 in `sink`; the counting unit in `blast`).
    public var effectiveResponseBytes: Int {
        switch mode {
        case .echo, .blast: return effectiveMessageBytes
        case .request: return responseBytes ?? effectiveMessageBytes
        case .sink: return 0
        }
    }

    /// True when received bytes are compared with the expected stream.
    public var verifies: Bool { mode == .echo || verify }

    /// Throws the first problem found, as one line.
    public func validate() throws(LoadError) {
        guard !target.isEmpty else { throw LoadError("--target HOST:PORT is required") }
        guard connections >= 1 else { throw LoadError("--connections must be at least 1, not \(connections)") }
        guard connections <= 1_000_000 else { throw LoadError("--connections \(connections) is more than 1,000,000") }
        if let r = connectRate, !(r > 0 && r.isFinite) {
            throw LoadError("--connect-rate must be greater than 0, not \(r)")
        }
        guard connectTimeout > .zero else { throw LoadError("--connect-timeout must be greater than 0") }
        guard (1...256).contains(threads) else { throw LoadError("--threads must be 1...256, not \(threads)") }
        guard duration > .zero else { throw LoadError("--duration must be greater than 0") }
        guard duration >= .milliseconds(10) else {
            throw LoadError(
                "--duration must be at least 10ms (a shorter window measures nothing), not \(duration.nanoseconds) ns")
        }
        guard warmup >= .zero else { throw LoadError("--warmup must not be negative") }
        guard interval >= .milliseconds(10) else { throw LoadError("the progress interval must be at least 10ms") }
        if let p = payload {
            guard !p.isEmpty else { throw LoadError("--payload-file is empty") }
        } else {
            guard messageBytes >= 1 else { throw LoadError("--message-bytes must be at least 1, not \(messageBytes)") }
        }
        guard effectiveMessageBytes <= 64 << 20 else { throw LoadError("--message-bytes must be at most 64 MiB") }
        if let r = responseBytes {
            guard mode == .request else { throw LoadError("--response-bytes applies to --mode request only") }
            guard r >= 1 else { throw LoadError("--response-bytes must be at least 1, not \(r)") }
        }
        if let k = pipeline {
            guard mode == .echo || mode == .request else {
                throw LoadError("--pipeline applies to --mode echo and request only")
            }
            guard (1...65536).contains(k) else { throw LoadError("--pipeline must be 1...65536, not \(k)") }
        }
        guard effectivePipeline <= (16 << 20) / connections else {
            throw LoadError(
                "--pipeline \(effectivePipeline) x --connections \(connections) is more than 16 M messages in flight")
        }
        if let r = rate {
            guard r > 0 && r.isFinite else { throw LoadError("--rate must be greater than 0, not \(r)") }
            guard r <= 1e9 else { throw LoadError("--rate must be at most 1,000,000,000 msgs/s") }
            guard mode != .blast else {
                throw LoadError("--rate does not apply to --mode blast (the server decides the pace)")
            }
        }
        if mode == .blast {
            if let b = expectBytes {
                guard !untilEOF else { throw LoadError("--expect-bytes and --until-eof exclude each other") }
                guard b >= 1 else { throw LoadError("--expect-bytes must be at least 1, not \(b)") }
            } else if !untilEOF {
                throw LoadError(
                    "--mode blast needs --expect-bytes B (the bytes each connection is owed) or --until-eof "
                        + "(the server's close ends each stream)")
            }
        } else {
            if expectBytes != nil { throw LoadError("--expect-bytes applies to --mode blast only") }
            if untilEOF { throw LoadError("--until-eof applies to --mode blast only") }
        }
        if let stages = rateStages {
            guard rate == nil else { throw LoadError("--rate and --rate-stages exclude each other") }
            guard !stages.isEmpty else { throw LoadError("--rate-stages needs at least one stage") }
            guard mode != .blast else {
                throw LoadError("--rate-stages does not apply to --mode blast (the server decides the pace)")
            }
            guard warmup == .zero else {
                throw LoadError("--warmup does not apply with --rate-stages: make the first stage the warm-up")
            }
            for st in stages {
                guard st.duration > .zero else { throw LoadError("--rate-stages: every stage needs a duration") }
                guard st.target >= 0, st.target <= 1e9, st.target.isFinite else {
                    throw LoadError("--rate-stages: targets must be 0...1,000,000,000 msgs/s")
                }
            }
            guard RateSchedule(stages).total >= 1 else { throw LoadError("--rate-stages plans no send at all") }
        }
        if verify && mode == .sink { throw LoadError("--verify does not apply to --mode sink (nothing comes back)") }
        if verify && mode == .request && effectiveResponseBytes != effectiveMessageBytes {
            throw LoadError(
                "--verify in --mode request needs an echo server: --response-bytes must equal the message size")
        }
        if verify && mode == .blast && payload != nil {
            throw LoadError("--verify in --mode blast checks the i % 251 pattern; drop --payload-file")
        }
        for t in failIf {
            if (t.metric.isLatency || t.metric == .unanswered) && !(mode == .echo || mode == .request) {
                throw LoadError(
                    "--fail-if '\(t.text)': \(t.metric.rawValue) is measured in --mode echo and request only")
            }
            if t.metric == .rate && openLoopRate == nil {
                throw LoadError("--fail-if '\(t.text)': rate (achieved / asked) needs --rate")
            }
        }
        guard extraDescriptors >= 0 else { throw LoadError("extra descriptors must not be negative") }
    }
}
