// fan-out: one 4 KiB message written to 1,000 connections from ONE buffer, round after round, by a broadcaster
// thread (not a loop). Ours: connection.write(slice of the buffer). NIO: channel.writeAndFlush(the ByteBuffer)
// (shares its storage). Before each write the broadcaster waits (yielding) while that connection is not
// writable. Client: limit/fanin.c, one epoll thread reading 256 KiB at a time. Memory: the server's peak RSS
// during the broadcast minus its RSS when it starts (VmHWM after a reset through /proc/self/clear_refs).
import CBenchSupport
import ChildProcess
import Dispatch
import Glibc
import NIOCore
import NIOPosix
import Synchronization
import ZeroCopyReactor

struct FanOutScenario: Scenario {
    let name = "fan-out"
    let title = "one 4 KiB message to 1,000 connections from one buffer, repeated"
    let unit = "msgs/s"
    let higherIsBetter = true

    func sides(_ context: Context) -> [Side] { [.ours, .nio] }

    func parameters(_ context: Context) -> [String: Int] {
        ["connections": 1000, "rounds": context.quick ? 50 : 250, "message": 4096]
    }

    func measure(_ side: Side, _ context: Context) throws -> Measurement {
        let p = parameters(context)
        let (n, rounds, size) = (p["connections"]!, p["rounds"]!, p["message"]!)
        let (server, port) = try context.startServer(self, side)
        defer { server.terminate() }
        let client = try context.startClient([context.limitTool("fanin"), "127.0.0.1", "\(port)", "\(n)", "\(rounds * size)"])
        _ = try client.expect("connected", timeout: 60)
        server.send("go")
        let result = try client.expectJSON("{", timeout: 600)
        client.wait()
        guard try number(result, "errors") == 0, try number(result, "bytes") == Double(n * rounds * size) else {
            throw HarnessError("\(side): fanin reported \(result)")
        }
        let report = try server.expectJSON("result ")
        let messages = Double(n * rounds)
        return Measurement(value: messages / (try number(result, "seconds")), metrics: [
            "peak_mem_mb": (try number(report, "hwm") - (try number(report, "rss_before"))) / 1048576,
            "allocs_per_msg": try number(report, "allocs") / messages,
            "server_cpu_ns_per_msg": try number(report, "cpu_s") * 1e9 / messages,
        ])
    }

    func serve(_ side: Side, _ arguments: Arguments) throws {
        let n = arguments.int("connections"), rounds = arguments.int("rounds"), size = arguments.int("message")
        let payload = PayloadBuffer(count: size)
        let registry = FanOutRegistry(expected: n)
        switch side {
        case .ours:
            let pool = try startOurs(arguments) { _ in OursFanOut(registry: registry) }
            let slice = payload.slice(at: 0, count: size)
            try broadcast(registry) {
                let connections = registry.ours.withLock { $0 }
                for _ in 0..<rounds {
                    for c in connections {
                        while !c.isWritable { sched_yield() }
                        try? c.write(slice)
                    }
                }
                for c in connections { c.close() }
            }
            pool.shutdown()
        case .nio:
            let buffer = payload.byteBuffer()
            let group = try startNIO(arguments) { NIOFanOut(registry: registry) }
            try broadcast(registry) {
                let channels = registry.nio.withLock { $0 }
                for r in 0..<rounds {
                    for channel in channels {
                        while !channel.isWritable { sched_yield() }
                        if r == rounds - 1 {
                            channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
                        } else {
                            channel.writeAndFlush(buffer, promise: nil)
                        }
                    }
                }
            }
            try group.syncShutdownGracefully()
        default:
            throw HarnessError("no \(side) server")
        }
    }

    /// Waits for "go" and every connection, starts `body` on a thread, waits until every connection closed,
    /// then prints the result line.
    private func broadcast(_ registry: FanOutRegistry, _ body: @escaping @Sendable () -> Void) throws {
        guard readCommand() == "go" else { throw HarnessError("fan-out server: expected go") }
        while registry.opened.load(ordering: .acquiring) < registry.expected { usleep(1000) }
        _ = zcrb_reset_peak_rss()
        let before = procStatus(pid: "self", field: "VmRSS") ?? 0
        let cpuStart = cpuSeconds()
        zcrb_alloc_counting(1)
        startThread(body)
        for _ in 0..<registry.expected { registry.closed.wait() }
        let hwm = procStatus(pid: "self", field: "VmHWM") ?? 0
        reportResult(cpuStart, extra: ["rss_before": before, "hwm": hwm])
    }
}

final class FanOutRegistry: Sendable {
    let expected: Int
    let ours = Mutex<[Connection]>([])
    let nio = Mutex<[any Channel]>([])
    let opened = Atomic<Int>(0)
    let closed = DispatchSemaphore(value: 0)
    init(expected: Int) { self.expected = expected }
}

final class OursFanOut: ConnectionHandler {
    let registry: FanOutRegistry
    init(registry: FanOutRegistry) { self.registry = registry }

    func connectionOpened(_ connection: Connection) {
        registry.ours.withLock { $0.append(connection) }
        registry.opened.add(1, ordering: .releasing)
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) { registry.closed.signal() }
}

final class NIOFanOut: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let registry: FanOutRegistry
    init(registry: FanOutRegistry) { self.registry = registry }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        registry.nio.withLock { $0.append(channel) }
        registry.opened.add(1, ordering: .releasing)
    }

    func channelInactive(context: ChannelHandlerContext) { registry.closed.signal() }
}
