// load-echo: how much CPU a load generator spends per message. 1,000 connections on one thread, closed loop, one
// 64-byte message in flight per connection: send, wait for the whole echo, verify its bytes, record the round trip
// in an HdrHistogram, send again. Ours: the release `zcr load --mode echo --pipeline 1 --threads 1`. NIO: a NIOPosix
// client doing the same (`SideBySide client load-echo nio`, below). Limit: limit/echoclient.c, the same work in
// plain C with one epoll thread (one send and one read per message, bytes verified, one clock_gettime per round
// trip, log-linear latency buckets): what this machine allows a client that makes one send and one read per
// message. The server is none of the sides' code: limit/echo.c with one thread, in its own process, so its CPU
// is not counted.
//
// All three clients print a "[T s] measuring ..." line once a second of their measured window (zcr load's
// progress line). At each one the harness reads the client's utime + stime from /proc/PID/stat and the bytes the
// echo server has echoed; the window is from the first such line to the last (the client's window less its first
// second). Headline: messages echoed in that window / client CPU seconds in it, the same for every side. Latency
// percentiles are each client's own report over its whole window.
import ChildProcess
import Foundation
import Glibc
import Histogram
import NIOCore
import NIOPosix

struct LoadEchoScenario: Scenario {
    let name = "load-echo"
    let title = "load generator, 1,000 connections, 64-byte echo round trips, one thread"
    let unit = "msgs/CPU-s"
    let higherIsBetter = true

    func sides(_ context: Context) -> [Side] { [.ours, .nio, .limit] }

    func parameters(_ context: Context) -> [String: Int] {
        ["connections": 1000, "message": 64, "threads": 1, "server_threads": 1,
         "warmup": context.quick ? 1 : 2, "seconds": context.quick ? 3 : 10]
    }

    /// The client's command line; `port` and `json` are placeholders in `commands`.
    func clientArguments(_ side: Side, _ context: Context, port: String, json: String) throws -> [String] {
        let p = parameters(context)
        switch side {
        case .ours:
            guard let zcr = context.zcr else {
                throw HarnessError("load-echo needs zcr: swift build -c release --package-path Benchmarks --product zcr, or --zcr PATH")
            }
            return [zcr, "load", "--target", "127.0.0.1:\(port)", "--mode", "echo", "--connections", "\(p["connections"]!)",
                    "--message-bytes", "\(p["message"]!)", "--pipeline", "1", "--threads", "\(p["threads"]!)",
                    "--warmup", "\(p["warmup"]!)s", "--duration", "\(p["seconds"]!)s", "--json", json]
        case .nio:
            var argv = [context.executable, "client", name, side.rawValue, "port=\(port)"]
            for key in ["connections", "message", "threads", "warmup", "seconds"] { argv.append("\(key)=\(p[key]!)") }
            return argv
        case .limit:  // one thread by construction
            return [context.limitTool("echoclient"), "127.0.0.1", port, "\(p["connections"]!)", "\(p["message"]!)",
                    "\(p["warmup"]!)", "\(p["seconds"]!)"]
        default:
            throw HarnessError("load-echo has no \(side) side")
        }
    }

    func commands(_ context: Context) -> [String] {
        let here = FileManager.default.currentDirectoryPath + "/"
        func relative(_ path: String) -> String { path.hasPrefix(here) ? String(path.dropFirst(here.count)) : path }
        let server = "\(relative(context.limitTool("echo"))) \(parameters(context)["server_threads"]!)   (prints: port PORT)"
        let clients = [Side.ours, .nio, .limit].compactMap {
            try? clientArguments($0, context, port: "PORT", json: "FILE").map(relative).joined(separator: " ")
        }
        return [server] + clients
    }

    func measure(_ side: Side, _ context: Context) throws -> Measurement {
        let p = parameters(context)
        let (server, port) = try context.startLimitServer(["echo", "\(p["server_threads"]!)"])
        defer { server.terminate() }
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("zcrb-load-echo-\(getpid()).json").path
        defer { try? FileManager.default.removeItem(atPath: json) }
        let client = try context.startClient(try clientArguments(side, context, port: "\(port)", json: json))
        defer { client.kill() }  // only if still running: an error above

        // Sample at every measuring line; keep the first and the last. The whole run has a deadline.
        let deadline = monotonicSeconds() + Double(p["warmup"]! + p["seconds"]! + 60)
        var first: WindowSample?, last: WindowSample?
        var ticks = 0
        var resultLine: String?
        while let line = try? client.readLine(timeout: max(0.001, deadline - monotonicSeconds())) {
            if line.hasPrefix("["), line.contains("] measuring") {
                let s = try WindowSample(client: client, server: server, messageBytes: p["message"]!)
                if first == nil { first = s }
                last = s
                ticks += 1
            } else if line.hasPrefix("result ") {
                resultLine = String(line.dropFirst("result ".count))
            }
        }
        let output = try client.finish(timeout: max(1, deadline - monotonicSeconds()))
        guard output.status == 0 else { throw HarnessError("\(side): \(client.command) ended with \(output.termination)") }

        let report: [String: Any]
        if side == .ours {
            report = try parseJSONObject(try String(contentsOfFile: json, encoding: .utf8), from: "zcr load --json")
        } else {  // nio and limit print "result {JSON}"
            guard let resultLine else { throw HarnessError("\(side): the client printed no result line") }
            report = try parseJSONObject(resultLine, from: client.name)
        }
        try Self.check(report, side: side, connections: p["connections"]!)
        guard let a = first, let b = last, ticks >= 2, b.seconds > a.seconds else {
            throw HarnessError("\(side): the client printed \(ticks) measuring line(s); the window needs 2")
        }
        let messages = b.messages - a.messages
        let cpu = b.cpu - a.cpu
        guard messages > 0, cpu > 0 else { throw HarnessError("\(side): \(messages) messages, \(cpu) CPU s in the window") }
        let latency = report["latency_us"] as? [String: Any] ?? [:]
        return Measurement(value: messages / cpu, metrics: [
            "msgs_per_s": messages / (b.seconds - a.seconds),
            "client_cpu_cores": cpu / (b.seconds - a.seconds),
            "user_us_per_msg": (b.user - a.user) * 1e6 / messages,
            "sys_us_per_msg": (b.system - a.system) * 1e6 / messages,
            "client_msgs_per_s": try number(report, "messages_per_s"),
            "p50_ms": try number(latency, "p50") / 1000,
            "p99_ms": try number(latency, "p99") / 1000,
            "p999_ms": try number(latency, "p999") / 1000,
            "window_s": b.seconds - a.seconds,
        ])
    }

    /// A run counts only if every connection was established and nothing failed or arrived wrong.
    static func check(_ report: [String: Any], side: Side, connections: Int) throws {
        if let failure = report["failure"] as? String { throw HarnessError("\(side): the client failed: \(failure)") }
        guard try number(report, "connections_established") == Double(connections) else {
            throw HarnessError("\(side): \(report["connections_established"] ?? "?") of \(connections) connections established")
        }
        guard try number(report, "verify_errors") == 0 else { throw HarnessError("\(side): verify errors: \(report)") }
        if let errors = report["errors"] as? [String: Any], !errors.isEmpty {
            throw HarnessError("\(side): errors during the run: \(errors)")
        }
    }

    func serve(_ side: Side, _ arguments: Arguments) throws {
        throw HarnessError("load-echo has no server of ours: its server is limit/echo.c")
    }

    func client(_ side: Side, _ arguments: Arguments) throws {
        guard side == .nio else { throw HarnessError("load-echo: the ours side is zcr load") }
        try NIOLoadGenerator(arguments).run()
    }
}

/// What the harness reads at one measuring line of the client.
struct WindowSample {
    let seconds: Double
    let user: Double
    let system: Double
    /// Messages the echo server has echoed so far.
    let messages: Double
    var cpu: Double { user + system }

    init(client: ChildProcess, server: ChildProcess, messageBytes: Int) throws {
        (user, system) = try processCPU(pid: client.pid)
        seconds = monotonicSeconds()
        server.send("count")
        guard let bytes = Double(try server.expect("count ", timeout: 10)) else {
            throw HarnessError("echo printed a bad count")
        }
        messages = bytes / Double(messageBytes)
    }
}

/// User and system CPU seconds of a process (all its threads) from /proc/PID/stat (fields 14 and 15).
func processCPU(pid: Int32) throws -> (user: Double, system: Double) {
    let text = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    guard let paren = text.lastIndex(of: ")") else { throw HarnessError("cannot parse /proc/\(pid)/stat") }
    let fields = text[text.index(after: paren)...].split(separator: " ")  // fields[0] is field 3 (state)
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
        throw HarnessError("cannot parse /proc/\(pid)/stat")
    }
    let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
    return (user / hz, system / hz)
}

func monotonicSeconds() -> Double { Double(monotonicNanos()) / 1e9 }

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

// MARK: - The NIO side

/// The SwiftNIO load generator: `zcr load --mode echo --pipeline 1` written as a NIO user would. Connections are
/// spread round robin over the loops; each loop keeps its own counters and histogram (`LoadLoopState`), and the
/// main thread samples them once a second through `submit`, as zcr load does. Prints zcr load's progress line in
/// the window and then "result {JSON}" with zcr load's field names.
struct NIOLoadGenerator {
    let port: Int, connections: Int, messageBytes: Int, threads: Int, warmup: Int, seconds: Int

    init(_ a: Arguments) {
        port = a.int("port")
        connections = a.int("connections")
        messageBytes = a.int("message")
        threads = a.int("threads")
        warmup = a.int("warmup")
        seconds = a.int("seconds")
    }

    func run() throws {
        raiseDescriptorLimit(connections + 64)
        let started = monotonicNanos()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        defer { try? group.syncShutdownGracefully() }
        let loops = Array(group.makeIterator())
        let states = try loops.map { loop in try loop.submit { NIOLoopBound(LoadLoopState(), eventLoop: loop) }.wait() }
        let pattern = EchoPattern(messageBytes: messageBytes)

        // Connect phase.
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let bootstraps = loops.indices.map { k in
            let (state, size) = (states[k], messageBytes)
            return ClientBootstrap(group: loops[k])
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOLoadClient(state: state.value, pattern: pattern, messageBytes: size))
                    }
                }
        }
        let connects = (0..<connections).map { bootstraps[$0 % loops.count].connect(to: address) }
        let channels = try EventLoopFuture.whenAllSucceed(connects, on: loops[0]).wait()

        // Traffic on every loop at once, warm-up, then the window, sampled every second.
        for (k, loop) in loops.enumerated() {
            let state = states[k]
            loop.execute { state.value.start() }
        }
        sleep(until: monotonicNanos() + UInt64(warmup) * 1_000_000_000)
        var total = TrafficSample.zero
        let baseline = try sampleAll(loops, states, stop: false)
        let windowStart = monotonicNanos()
        let windowEnd = windowStart + UInt64(seconds) * 1_000_000_000
        var previous = baseline
        var previousTime = windowStart
        var latency = LoadLoopState.histogram()
        var next = windowStart + 1_000_000_000
        while true {
            let tick = min(next, windowEnd)
            sleep(until: tick)
            let final = tick >= windowEnd
            let now = monotonicNanos()
            let sample = try sampleAll(loops, states, stop: final)
            latency.add(sample.latency)
            total = sample
            let rate = Double(sample.received - previous.received) / (Double(now - previousTime) / 1e9)
            let elapsed = Double(now - started) / 1e9
            say("[\(String(format: "%.1f", elapsed))s] measuring  conns \(sample.open)/\(connections)  "
                + "msgs/s \(Int(rate))  p99 \(latency.totalCount > 0 ? "\(latency.valueAtPercentile(99)) µs" : "-")")
            previous = sample
            previousTime = now
            if final { break }
            next += 1_000_000_000
        }
        let window = Double(previousTime - windowStart) / 1e9
        let received = total.received - baseline.received
        let failure: Any =
            total.verifyErrors > 0 ? "verify errors" : total.errors.isEmpty ? NSNull() as Any : "errors" as Any
        say("result " + jsonLine([
            "connections_established": channels.count,
            "duration_s": window,
            "messages_sent": total.sent - baseline.sent,
            "messages_received": received,
            "messages_per_s": Double(received) / window,
            "latency_us": [
                "count": Int(latency.totalCount), "min": Int(latency.min), "p50": Int(latency.valueAtPercentile(50)),
                "p90": Int(latency.valueAtPercentile(90)), "p99": Int(latency.valueAtPercentile(99)),
                "p999": Int(latency.valueAtPercentile(99.9)), "max": Int(latency.maxRecorded),
            ],
            "verify_errors": total.verifyErrors,
            "verified_bytes": total.verifiedBytes,
            "errors": total.errors,
            "failure": failure,
        ]))
        for channel in channels { channel.close(promise: nil) }
    }

    /// Every loop's counters (summed) and histogram since the last sample (merged); `stop` ends sending first.
    private func sampleAll(_ loops: [any EventLoop], _ states: [NIOLoopBound<LoadLoopState>], stop: Bool) throws
        -> TrafficSample
    {
        var sum = TrafficSample.zero
        for (k, loop) in loops.enumerated() {
            let state = states[k]
            sum.add(try loop.submit { state.value.sample(stop: stop) }.wait())
        }
        return sum
    }

    /// Waits on the clock until `deadline` (the window's timing, not a synchronisation).
    private func sleep(until deadline: UInt64) {
        while true {
            let now = monotonicNanos()
            if now >= deadline { return }
            var ts = timespec(tv_sec: Int((deadline - now) / 1_000_000_000), tv_nsec: Int((deadline - now) % 1_000_000_000))
            _ = nanosleep(&ts, nil)
        }
    }

    private func raiseDescriptorLimit(_ needed: Int) {
        var rl = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &rl) == 0, rl.rlim_cur < rlim_t(needed) else { return }
        var raised = rlimit(rlim_cur: rl.rlim_max, rlim_max: rl.rlim_max)
        _ = setrlimit(resource, &raised)
    }
}

/// Counters of one loop (cumulative) and its histogram since the previous sample.
struct TrafficSample: Sendable {
    var sent = 0, received = 0, verifiedBytes = 0, verifyErrors = 0, open = 0
    var errors: [String: Int] = [:]
    var latency = LoadLoopState.histogram()

    static var zero: TrafficSample { TrafficSample() }

    mutating func add(_ other: TrafficSample) {
        sent += other.sent
        received += other.received
        verifiedBytes += other.verifiedBytes
        verifyErrors += other.verifyErrors
        open += other.open
        errors.merge(other.errors, uniquingKeysWith: +)
        latency.add(other.latency)
    }
}

/// One loop's generator state. Loop-confined (reached through `NIOLoopBound`).
final class LoadLoopState {
    private(set) var sending = false
    private(set) var stopped = false
    private var clients: [NIOLoadClient] = []
    var counters = TrafficSample()

    /// Microseconds from 1 µs to an hour, three significant digits: zcr load's layout.
    static func histogram() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    }

    func opened(_ client: NIOLoadClient) {
        clients.append(client)
        counters.open += 1
    }

    func closed() {
        counters.open -= 1
        if !stopped { count(error: "closed_by_peer") }
    }

    func count(error kind: String) { counters.errors[kind, default: 0] += 1 }

    @inline(__always)
    func record(micros: UInt64) {
        if !counters.latency.record(micros) { counters.latency.record(counters.latency.highestTrackableValue) }
    }

    func start() {
        sending = true
        for c in clients { c.send() }
    }

    func sample(stop: Bool) -> TrafficSample {
        if stop {
            sending = false
            stopped = true
        }
        let s = counters
        counters.latency = Self.histogram()
        return s
    }
}

/// The stream every connection sends and expects back: byte i is `i % 251`, as zcr load sends it. Message k is
/// a slice of one buffer of M + 251 bytes (`getSlice` shares the storage: no copy).
struct EchoPattern: Sendable {
    static let period = 251
    let buffer: ByteBuffer
    let messageBytes: Int

    init(messageBytes: Int) {
        self.messageBytes = messageBytes
        var b = ByteBufferAllocator().buffer(capacity: messageBytes + Self.period)
        for i in 0..<(messageBytes + Self.period) { b.writeInteger(UInt8(i % Self.period)) }
        buffer = b
    }

    @inline(__always)
    func message(_ k: Int) -> ByteBuffer {
        let start = (k % Self.period) * (messageBytes % Self.period) % Self.period
        return buffer.getSlice(at: start, length: messageBytes)!
    }

    /// Whether `bytes` are the stream's bytes from `offset` on.
    func matches(_ bytes: UnsafeRawBufferPointer, streamOffset offset: Int) -> Bool {
        buffer.withUnsafeReadableBytes { expected in
            var done = 0
            while done < bytes.count {
                let start = (offset + done) % Self.period
                let n = min(bytes.count - done, expected.count - start)
                if memcmp(bytes.baseAddress! + done, expected.baseAddress! + start, n) != 0 { return false }
                done += n
            }
            return true
        }
    }
}

/// One connection of the NIO generator: one message in flight; on each whole echo, records the round trip and
/// sends the next. Bytes are verified as they arrive.
final class NIOLoadClient: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let state: LoadLoopState
    private let pattern: EchoPattern
    private let messageBytes: Int
    private var context: ChannelHandlerContext?
    private var sent = 0
    private var received = 0
    private var fill = 0
    private var streamOffset = 0
    private var sendTime: UInt64 = 0

    init(state: LoadLoopState, pattern: EchoPattern, messageBytes: Int) {
        self.state = state
        self.pattern = pattern
        self.messageBytes = messageBytes
    }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        state.opened(self)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        state.closed()
        context.fireChannelInactive()
    }

    /// Sends the next message if the previous one came back and the loop is sending.
    func send() {
        guard state.sending, sent == received, let context else { return }
        sendTime = NIODeadline.now().uptimeNanoseconds
        let message = pattern.message(sent)
        sent += 1
        state.counters.sent += 1
        context.writeAndFlush(wrapOutboundOut(message), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        let n = bytes.readableBytes
        state.counters.verifiedBytes += n
        if !bytes.withUnsafeReadableBytes({ pattern.matches($0, streamOffset: streamOffset) }) {
            state.counters.verifyErrors += 1
        }
        streamOffset += n
        fill += n
        guard fill >= messageBytes else { return }
        let now = NIODeadline.now().uptimeNanoseconds
        while fill >= messageBytes {
            fill -= messageBytes
            guard received < sent else {
                state.count(error: "unexpected_bytes")
                fill = 0
                break
            }
            state.record(micros: (now &- min(sendTime, now)) / 1000)
            received += 1
            state.counters.received += 1
        }
        send()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state.count(error: "\(error)")
        context.close(promise: nil)
    }
}
