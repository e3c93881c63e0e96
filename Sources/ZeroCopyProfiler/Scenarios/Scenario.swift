// What a scenario is: its name, its knobs, and the four steps the runner drives (prepare, warm up, open the
// window, stop). Scenarios generate traffic on the pool's own loops; they must never measure anything themselves.
import ZeroCopyReactor

/// The scenarios of `zcr profile`.
public enum ScenarioName: String, Sendable, CaseIterable {
    /// One 1000 MiB payload, touched before measuring, sent with ONE write; a client reads and discards it.
    case seedLarge = "seed-large"
    /// The same payload as 8 slices in one gathered write.
    case seedGather = "seed-gather"
    /// 16 Mi messages of 64 bytes, slices of one shared buffer, flushed every 1024.
    case smallMany = "small-many"
    /// 1,000 connections echoing 4 KiB messages for 10 seconds.
    case echo1k = "echo-1k"
}

/// Everything a run can be told. The defaults are the scenarios; the size knobs exist to keep tests quick.
public struct ProfileOptions: Sendable {
    public var scenario: ScenarioName
    /// Send through `Connection.writeCopying`: every write copied into a new buffer first.
    public var copyControl = false
    /// Loops (reactor threads) of the pool, which is both server and client.
    public var threads = 2
    /// seed-*: payload size, and the number of slices of seed-gather's one write.
    public var payloadBytes = 1000 << 20
    public var gatherSlices = 8
    /// small-many: messages, their size, and how many are written before the loop flushes.
    public var messages = 16 << 20
    public var messageBytes = 64
    public var batch = 1024
    /// echo-1k: connections, message size, warm-up and window lengths.
    public var connections = 1000
    public var echoMessageBytes = 4096
    public var warmupSeconds = 1.0
    public var durationSeconds = 10.0
    /// echo-1k: the server is the async face (`ReactorPool.serve`, `for try await` over the inbound slices,
    /// `await write`) instead of the callback handler.
    public var asyncServer = false
    /// Check every iovec against the slices appended (the core's verify mode).
    public var verifyIovecs = true
    public var thresholds = Thresholds.standard
    /// A phase that takes longer fails the run instead of hanging it.
    public var phaseTimeoutSeconds = 600.0

    public init(scenario: ScenarioName) {
        self.scenario = scenario
    }
}

/// Why a run could not produce a report.
public enum ProfileError: Error, CustomStringConvertible, Equatable {
    case setup(String)
    case scenarioFailed(String)
    case timeout(String)
    /// Attaching to a profiling endpoint failed (no endpoint, a bad answer, the server went away).
    case attach(String)

    public var description: String {
        switch self {
        case .attach(let m): "attach: \(m)"
        case .setup(let m): "setup failed: \(m)"
        case .scenarioFailed(let m): "scenario failed: \(m)"
        case .timeout(let m): "timed out: \(m)"
        }
    }
}

/// How a phase ends: when traffic completes, or after a fixed time.
enum PhaseEnd {
    case completion(Completion)
    case duration(seconds: Double)
}

/// One scenario's traffic. `prepare` and the `start*` calls come from the runner's thread, in this order.
protocol ScenarioDriver: AnyObject, Sendable {
    /// Connects what the scenario needs and returns once everything is open.
    func prepare(pool: ReactorPool) throws(ProfileError)
    func startWarmUp() -> PhaseEnd
    func startWindow() -> PhaseEnd
    /// Stops generating traffic (duration-based scenarios).
    func stop()
    /// Connection.write calls made so far (any thread).
    var writes: Int { get }
    /// Set when the traffic failed in a way no completion reports (a connection of many closed with an error).
    var failure: String? { get }
    /// What the scenario did, for the report: name → value.
    var parameters: [(String, Int)] { get }
}

extension ProfileOptions {
    func makeDriver() -> any ScenarioDriver {
        switch scenario {
        case .seedLarge: SeedScenario(options: self, pieces: 1)
        case .seedGather: SeedScenario(options: self, pieces: gatherSlices)
        case .smallMany: SmallManyScenario(options: self)
        case .echo1k: EchoScenario(options: self)
        }
    }
}
