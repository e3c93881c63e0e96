// The result of one `zcr profile` run: the figures of the measured window, the verdict, the scenario's targets and
// the per-second timeline. A plain value; rendering lives in ReportJSON.swift and ReportHTML.swift. It must never
// hold a figure that was not measured (unknown figures are nil and render as null / "unavailable").

/// One point of the timeline (once a second, plus the window's two edges).
public struct TimelineSample: Sendable {
    public enum Phase: String, Sendable { case setup, warmup, window, done }
    /// "tick" for the once-a-second samples, "window_start" / "window_end" at the edges.
    public var event: String
    /// Seconds since the run started.
    public var seconds: Double
    public var phase: Phase
    /// Bytes every reactor thread sent since the pool started.
    public var bytesSent: Int
    /// Sent bytes per second since the previous sample.
    public var throughputBytesPerSecond: Double?
    /// Bytes the reactor threads allocated since the meter was set up (nil without jemalloc).
    public var reactorBytesAllocated: UInt64?
    /// jemalloc's process-wide levels.
    public var heap: HeapStats?
    /// VmRSS and VmHWM (VmHWM is reset when the window opens).
    public var rss: Int?
    public var rssPeak: Int?
    public var bytesCopied: Int
    /// Bytes memcpy'd on the reactor threads since the meter was set up (nil without the memcpy counter).
    public var memcpyBytes: UInt64? = nil
}

/// The server a report was attached to (`zcr profile --attach`).
public struct AttachedServer: Sendable {
    public var path: String
    public var pid: Int
    /// The server's copy control ("allocate", "reuse"), nil when it has none.
    public var copyControl: String?
    public var verifyIovecs: Bool
    public var allocationCountsExact: Bool
    public var warmupSeconds: Double
    public var durationSeconds: Double
    public var sampleIntervalSeconds: Double
}

/// Whether the process had the memcpy counter, and how it was set up.
public struct MemcpyCounterInfo: Sendable, Equatable {
    public var present: Bool
    public var thresholdBytes: Int?
    /// The preloaded shared object, or nil when linked into the executable (zcr) or absent.
    public var library: String?

    public init(present: Bool, thresholdBytes: Int?, library: String?) {
        self.present = present
        self.thresholdBytes = thresholdBytes
        self.library = library
    }

    public init(_ counter: MemcpyCounter?) {
        self.init(present: counter != nil, thresholdBytes: counter?.thresholdBytes, library: counter?.library)
    }
}

/// Everything one run measured and concluded.
public struct ProfileReport: Sendable {
    public static let schemaVersion = 1
    /// The scenario run in this process, or nil when the report is of an attached server.
    public var scenario: ScenarioName?
    public var attached: AttachedServer? = nil
    public var copyControl: Bool
    public var threads: Int
    /// The scenario's own parameters (payload size, messages, connections, ...).
    public var parameters: [(String, Int)]
    public var allocator: AllocatorInfo
    /// True when each reactor thread had an arena of its own (what makes `reactor_allocations` exact).
    public var dedicatedArenas: Bool
    public var window: WindowFigures
    public var windowStartSeconds: Double
    public var windowEndSeconds: Double
    /// How the peak RSS inside the window was isolated: "clear_refs", "vmhwm_rose" or "unavailable".
    public var peakRSSMethod: String
    public var verdict: Verdict
    public var thresholds: Thresholds
    /// The targets for this scenario, checked against this run (they do not change the verdict).
    public var targets: [Check]
    public var timeline: [TimelineSample]
    public var notes: [String]
    public var memcpyCounter = MemcpyCounterInfo(present: false, thresholdBytes: nil, library: nil)

    public var zeroCopy: Bool { verdict.zeroCopy }
    /// "seed-large", ..., or "attach".
    public var subject: String { scenario?.rawValue ?? "attach" }
}

extension ProfileReport {
    /// The targets for `scenario` (with or without the copy control); nil is an attached server.
    static func targets(for scenario: ScenarioName?, copyControl: Bool, window w: WindowFigures, verdict: Verdict)
        -> [Check]
    {
        let ratio = w.bytesSent > 0 ? w.allocatedBytesPerByteSent : nil
        if copyControl {
            return [
                Check(
                    name: "allocated_bytes_per_byte_sent", value: ratio, limit: 0.9, comparison: .atLeast,
                    detail: "the copy control must be caught allocating about one byte per byte sent"),
            ].filter { _ in scenario != nil } + [
                Check(
                    name: "zero_copy", value: verdict.zeroCopy ? 1 : 0, limit: 0, comparison: .atMost,
                    detail: "the copy control must get a false verdict"),
            ]
        }
        var checks = [
            Check(
                name: "allocated_bytes_per_byte_sent", value: ratio, limit: 0.001, comparison: .atMost,
                detail: "every scenario"),
            Check(
                name: "zero_copy", value: verdict.zeroCopy ? 1 : 0, limit: 1, comparison: .atLeast,
                detail: "every scenario without the copy control"),
        ]
        switch scenario {
        case .seedLarge:
            checks.append(
                Check(
                    name: "peak_rss_growth_bytes", value: w.peakRSSGrowth.map { Double($0) }, limit: Double(1 << 20),
                    comparison: .atMost, detail: "1 MiB: 0.1% of the seed's 1000 MiB payload"))
        case .smallMany:
            checks.append(
                Check(
                    name: "allocations_per_write", value: w.allocationsPerWrite, limit: 0, comparison: .atMost,
                    detail: "no allocation per write in the window"))
        case .seedGather, .echo1k, nil:
            break
        }
        return checks
    }
}
