// The command line. `SideBySide run` measures scenarios (all sides alternating, several runs each) and writes JSON;
// `SideBySide serve` is the server child a run starts for one side, `SideBySide client` the client child of a
// scenario that measures clients; `SideBySide list` names the scenarios.
//
//   SideBySide run [--scenario NAME|all]... [--runs 3] [--quick] [--json FILE] [--loops N] [--no-pin]
//                  [--sides ours,nio,limit,iperf3] [--limit-dir DIR] [--iperf3 PATH|none] [--zcr PATH]
import ChildProcess
import Foundation
import Glibc

let allScenarios: [any Scenario] = [
    BlastScenario(), SlicesScenario(), CrossThreadScenario(), PingPongScenario(), ConnStormScenario(),
    IdleScenario(), FanOutScenario(), LoadEchoScenario(), FileServeScenario(),
]

@main
struct SideBySide {
    static func main() {
        signal(SIGPIPE, SIG_IGN)  // the harness writes to children that may have exited; NIO does this too anyway
        let args = Array(CommandLine.arguments.dropFirst())
        do {
            switch args.first {
            case "run": try run(Array(args.dropFirst()))
            case "serve": try serve(Array(args.dropFirst()))
            case "client": try client(Array(args.dropFirst()))
            case "list": for s in allScenarios { print("\(s.name)\t\(s.title)") }
            default:
                print("usage: SideBySide run [--scenario NAME|all]... [--runs N] [--quick] [--json FILE] [--loops N]")
                print("                      [--sides ours,nio,limit,iperf3] [--limit-dir DIR] [--iperf3 PATH|none] [--zcr PATH]")
                print("       SideBySide list")
                exit(args.first == nil ? 0 : 2)
            }
        } catch {
            log("SideBySide: \(error)")
            exit(1)
        }
    }

    static func serve(_ args: [String]) throws {
        let (scenario, side, arguments) = try child(args, "serve")
        try scenario.serve(side, arguments)
        exit(0)
    }

    static func client(_ args: [String]) throws {
        let (scenario, side, arguments) = try child(args, "client")
        try scenario.client(side, arguments)
        exit(0)
    }

    /// SCENARIO SIDE k=v... of a child.
    static func child(_ args: [String], _ verb: String) throws -> (any Scenario, Side, Arguments) {
        guard args.count >= 2, let scenario = allScenarios.first(where: { $0.name == args[0] }),
              let side = Side(rawValue: args[1]) else { throw HarnessError("usage: SideBySide \(verb) SCENARIO SIDE k=v...") }
        var values: [String: Int] = [:]
        for kv in args.dropFirst(2) {
            let parts = kv.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let v = Int(parts[1]) else { throw HarnessError("bad argument \(kv)") }
            values[String(parts[0])] = v
        }
        return (scenario, side, Arguments(values: values))
    }

    static func run(_ args: [String]) throws {
        var names: [String] = []
        var runs = 3
        var quick = false
        var json: String?
        var loops: Int?
        var pin = sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2 && which("taskset") != nil
        var sides: [Side]?
        var limitDir: String?
        var iperf3: String? = "iperf3"
        var zcr: String?
        var i = 0
        func value() throws -> String {
            i += 1
            guard i < args.count else { throw HarnessError("\(args[i - 1]) needs a value") }
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--scenario": names.append(try value())
            case "--runs": runs = Int(try value()) ?? 3
            case "--quick": quick = true
            case "--json": json = try value()
            case "--loops": loops = Int(try value()) ?? 2
            case "--no-pin": pin = false
            case "--sides": sides = try value().split(separator: ",").map {
                guard let s = Side(rawValue: String($0)) else { throw HarnessError("unknown side \($0)") }
                return s
            }
            case "--limit-dir": limitDir = try value()
            case "--iperf3": iperf3 = try value()
            case "--zcr": zcr = try value()
            default: throw HarnessError("unknown option \(args[i])")
            }
            i += 1
        }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        if iperf3 == "none" { iperf3 = nil }
        if let name = iperf3, !name.contains("/") { iperf3 = which(name) }
        // zcr built into this package's build folder (swift build --product zcr) sits next to this executable.
        let besideUs = URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("zcr").path
        if zcr == nil, access(besideUs, X_OK) == 0 { zcr = besideUs }
        if let path = zcr, access(path, X_OK) != 0 { throw HarnessError("--zcr \(path) is not an executable") }
        // Pinned, a server has one core: one loop (or thread) each. Unpinned, as many as the machine has (2 here).
        let context = Context(
            quick: quick, runs: runs, loops: loops ?? (pin ? 1 : 2),
            limitDirectory: try limitDir ?? buildLimitTools(executable: executable), iperf3: iperf3,
            onlySides: sides, zcr: zcr, executable: executable, cores: pin ? (0, 1) : nil)
        if names.isEmpty || names.contains("all") { names = allScenarios.map(\.name) }
        var results: [[String: Any]] = []
        for name in names {
            guard let scenario = allScenarios.first(where: { $0.name == name }) else {
                throw HarnessError("unknown scenario \(name) (SideBySide list names them)")
            }
            results.append(try runScenario(scenario, context))
            if let json { try write(results, to: json, context) }  // keep what is done if a later one fails
        }
    }

    static func write(_ results: [[String: Any]], to path: String, _ context: Context) throws {
        let object: [String: Any] = [
            "date": ISO8601DateFormatter().string(from: Date()), "quick": context.quick, "runs": context.runs,
            "loops": context.loops, "pinned": context.cores != nil, "scenarios": results,
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: path))
    }

    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }

    /// Compiles limit/*.c (cc -O2) into .build/limit of the benchmarks package when a binary is missing or older
    /// than its source. The package is found from this executable's path (.../Benchmarks/.build/...).
    static func buildLimitTools(executable: String) throws -> String {
        var url = URL(fileURLWithPath: executable)
        while url.path != "/" && url.lastPathComponent != ".build" { url.deleteLastPathComponent() }
        guard url.lastPathComponent == ".build" else { throw HarnessError("cannot find the package of \(executable); pass --limit-dir") }
        let root = url.deletingLastPathComponent().path
        let out = url.path + "/limit"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        func mtime(_ p: String) -> Date {
            ((try? FileManager.default.attributesOfItem(atPath: p))?[.modificationDate] as? Date) ?? .distantPast
        }
        let header = mtime(root + "/limit/common.h")
        for tool in ["reader", "writer", "echo", "echoclient", "pingpong", "storm", "idle", "fanin"] {
            let source = "\(root)/limit/\(tool).c", binary = "\(out)/\(tool)"
            if mtime(binary) > max(mtime(source), header) { continue }
            let cc = try ChildProcess.start(["cc", "-O2", "-pthread", "-o", binary, source])
            guard cc.wait(timeout: 120) == 0 else { throw HarnessError("cc failed for \(source)") }
        }
        return out
    }
}
