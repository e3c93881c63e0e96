// The measuring harness: runs every side of a scenario in one invocation, alternating (the order rotates each run
// so no side always goes first), and writes every run to JSON. A run that fails stops the invocation: a wrong
// figure is worse than none. Servers under test always run in a fresh child process (`SideBySide serve ...`), and
// clients are the same plain C programs for every side, so only the system under test differs.
import ChildProcess
import Foundation
import Glibc

enum Side: String, CaseIterable, Sendable {
    case ours, nio, limit, iperf3
    /// Ours through another path of the same library (file-serve: slices of a read-only mapping, not sendfile).
    case oursMmap = "ours-mmap"
    /// Ours through the async face (`ReactorPool.serve`: one task per connection) instead of the callback core.
    case oursAsync = "ours-async"
}

/// One run of one side: the headline value and any other figures (latency, memory, allocations, CPU).
struct Measurement {
    var value: Double
    var metrics: [String: Double] = [:]
}

protocol Scenario: Sendable {
    var name: String { get }
    var title: String { get }
    /// Unit of the headline value.
    var unit: String { get }
    var higherIsBetter: Bool { get }
    /// Sides this scenario has on this machine (ours and nio always; limit and iperf3 where they exist).
    func sides(_ context: Context) -> [Side]
    /// Sizes used (depend on --quick); passed to the server children as key=value.
    func parameters(_ context: Context) -> [String: Int]
    /// One run of one side, in the parent.
    func measure(_ side: Side, _ context: Context) throws -> Measurement
    /// The server under test, in a child process (ours or nio). Prints "port N" first.
    func serve(_ side: Side, _ arguments: Arguments) throws
    /// The client under test, in a child process (`SideBySide client`), for scenarios that measure a client.
    func client(_ side: Side, _ arguments: Arguments) throws
    /// Command lines worth quoting in the report (programs the scenario runs besides `SideBySide serve`).
    func commands(_ context: Context) -> [String]
}

extension Scenario {
    func client(_ side: Side, _ arguments: Arguments) throws { throw HarnessError("\(name) has no client of its own") }
    func commands(_ context: Context) -> [String] { [] }
}

/// key=value arguments of a child.
struct Arguments: Sendable {
    var values: [String: Int]
    func int(_ key: String) -> Int {
        guard let v = values[key] else { fatalError("missing argument \(key)=") }
        return v
    }
}

struct Context {
    var quick: Bool
    var runs: Int
    var loops: Int
    var limitDirectory: String
    var iperf3: String?
    var onlySides: [Side]?
    /// The release `zcr` (load-echo's ours side), if there is one.
    var zcr: String?
    /// This executable (children are started from it).
    var executable: String
    /// Servers run on `serverCore` and clients on `clientCore` (taskset), so a run measures the server, not the
    /// scheduler; nil when the machine has one core or --no-pin was given.
    var cores: (server: Int, client: Int)?

    func limitTool(_ name: String) -> String { limitDirectory + "/" + name }

    /// `argv` run on the server's (or the client's) core.
    func pinned(_ argv: [String], server: Bool) -> [String] {
        guard let cores else { return argv }
        return ["taskset", "-c", "\(server ? cores.server : cores.client)"] + argv
    }

    /// Starts a client program on the client's core.
    func startClient(_ argv: [String], input: Bool = false) throws -> ChildProcess {
        try ChildProcess.start(pinned(argv, server: false), input: input)
    }

    /// Starts our own server child for `scenario` on `side`.
    func startServer(_ scenario: any Scenario, _ side: Side) throws -> (ChildProcess, Int) {
        var argv = [executable, "serve", scenario.name, side.rawValue, "loops=\(loops)"]
        for (k, v) in scenario.parameters(self).sorted(by: { $0.key < $1.key }) { argv.append("\(k)=\(v)") }
        let child = try ChildProcess.start(pinned(argv, server: true), input: true)
        guard let port = Int(try child.expect("port ")) else { throw HarnessError("server child printed a bad port") }
        return (child, port)
    }

    /// Starts a C program of limit/ that prints "port N" first.
    func startLimitServer(_ argv: [String]) throws -> (ChildProcess, Int) {
        let child = try ChildProcess.start(pinned([limitTool(argv[0])] + argv.dropFirst(), server: true), input: true)
        guard let port = Int(try child.expect("port ")) else { throw HarnessError("\(argv[0]) printed a bad port") }
        return (child, port)
    }
}

/// Median, min and max of some values.
struct Summary {
    let median: Double, min: Double, max: Double
    init(_ values: [Double]) {
        let s = values.sorted()
        median = s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        min = s.first!
        max = s.last!
    }
}

func log(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

func format(_ v: Double) -> String {
    if v == 0 { return "0" }
    let a = abs(v)
    if a >= 1e6 { return String(format: "%.2fM", v / 1e6) }
    if a >= 1e4 { return String(format: "%.1fk", v / 1e3) }
    if a >= 100 { return String(format: "%.0f", v) }
    if a >= 1 { return String(format: "%.2f", v) }
    return String(format: "%.4f", v)
}

/// Runs a scenario on each of its sides, `context.runs` times, rotating the order; returns its JSON object.
func runScenario(_ scenario: any Scenario, _ context: Context) throws -> [String: Any] {
    var sides = scenario.sides(context)
    if let only = context.onlySides { sides = sides.filter(only.contains) }
    log("== \(scenario.name): \(scenario.title) [\(sides.map(\.rawValue).joined(separator: ", "))] x\(context.runs)")
    var runs: [[String: Any]] = []
    var values: [Side: [Double]] = [:]
    for run in 0..<context.runs {
        let order = (0..<sides.count).map { sides[($0 + run) % sides.count] }
        for side in order {
            let m = try scenario.measure(side, context)
            values[side, default: []].append(m.value)
            let extra = m.metrics.sorted { $0.key < $1.key }.map { "\($0.key)=\(format($0.value))" }.joined(separator: " ")
            log("  run \(run + 1) \(side.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)) \(format(m.value)) \(scenario.unit)  \(extra)")
            runs.append(["side": side.rawValue, "run": run, "value": m.value, "metrics": m.metrics])
            usleep(200_000)  // let TIME_WAIT sockets and freed memory settle between runs
        }
    }
    for side in sides {
        guard let v = values[side] else { continue }
        let s = Summary(v)
        log("  \(side.rawValue): median \(format(s.median)) (\(format(s.min))-\(format(s.max))) \(scenario.unit)")
    }
    var result: [String: Any] = [
        "scenario": scenario.name, "title": scenario.title, "unit": scenario.unit,
        "higher_is_better": scenario.higherIsBetter, "params": scenario.parameters(context),
        "loops": context.loops, "runs": runs,
    ]
    let commands = scenario.commands(context)
    if !commands.isEmpty { result["commands"] = commands }
    return result
}

/// Parses the C reader's line "bytes N seconds S MB/s X messages/s Y" (with or without its leading "bytes").
func parseReader(_ line: String) throws -> (bytes: Double, seconds: Double) {
    var f = line.split(separator: " ").map(String.init)
    if f.first != "bytes" { f.insert("bytes", at: 0) }
    guard f.count >= 4, f[2] == "seconds", let b = Double(f[1]), let s = Double(f[3]) else {
        throw HarnessError("reader printed: \(line)")
    }
    return (b, s)
}

func number(_ object: [String: Any], _ key: String) throws -> Double {
    if let v = object[key] as? Double { return v }
    if let v = object[key] as? Int { return Double(v) }
    if let v = object[key] as? NSNumber { return v.doubleValue }
    throw HarnessError("missing \(key) in \(object)")
}

/// CPU seconds (user + system) a process has used so far, from /proc/PID/stat: the same measure for every side,
/// our servers, NIO's and the C ones alike.
/// Seconds core `core` has spent busy since boot (user, nice, system, irq and softirq in /proc/stat), and seconds
/// the hypervisor gave it to someone else (steal). Sampled around a run, the busy share tells a run bound by the
/// client's core from one bound by the server's (the client core near 1.0: the server was waiting for its readers),
/// and the steal share says how much of the run the machine was not ours at all.
func coreSeconds(_ core: Int) throws -> (busy: Double, steal: Double) {
    guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu\(core) ") }) else {
        throw HarnessError("cannot read cpu\(core) in /proc/stat")
    }
    let f = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard f.count >= 8 else { throw HarnessError("unexpected /proc/stat line: \(line)") }
    // user nice system idle iowait irq softirq steal
    let tick = Double(sysconf(Int32(_SC_CLK_TCK)))
    return ((f[0] + f[1] + f[2] + f[5] + f[6]) / tick, f[7] / tick)
}

func processCPUSeconds(_ pid: Int32) throws -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { throw HarnessError("cannot read /proc/\(pid)/stat") }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14 and stime 15 (1-based), so 11 and 12 here.
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
        throw HarnessError("unexpected /proc/\(pid)/stat: \(text)")
    }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
