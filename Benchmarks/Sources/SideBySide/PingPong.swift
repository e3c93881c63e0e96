// ping-pong-1k: 1,000 connections, each sends 64 bytes and waits for their echo before the next (limit/pingpong.c,
// one epoll thread, the same for every server), for 10 s. The servers are each library's echo idiom; the limit
// is limit/echo.c (epoll, one thread per SO_REUSEPORT listener). Allocations and server CPU are counted over the
// timed phase only (after connecting and one warm-up round trip per connection). With pinning (the default) the
// server runs one loop on core 0 and the client on core 1, so server CPU per request compares the servers.
import ChildProcess
import Foundation

struct PingPongScenario: Scenario {
    let name = "ping-pong-1k"
    let title = "1,000 connections, 64-byte ping-pong"
    let unit = "req/s"
    let higherIsBetter = true

    func sides(_ context: Context) -> [Side] { [.ours, .oursAsync, .nio, .limit] }

    func parameters(_ context: Context) -> [String: Int] {
        ["connections": 1000, "seconds": context.quick ? 3 : 10, "message": 64]
    }

    func measure(_ side: Side, _ context: Context) throws -> Measurement {
        let p = parameters(context)
        let (server, port) = side == .limit
            ? try context.startLimitServer(["echo", "\(context.loops)"])
            : try context.startServer(self, side)
        defer { server.terminate() }
        let client = try context.startClient([context.limitTool("pingpong"), "127.0.0.1", "\(port)", "\(p["connections"]!)",
                                             "\(p["seconds"]!)", "\(p["message"]!)"], input: true)
        _ = try client.expect("warm", timeout: 60)
        if side != .limit {
            server.send("count")
            _ = try server.expect("ok")
        }
        let cpuBefore = try processCPUSeconds(server.pid)
        client.send("go")
        let result = try client.expectJSON("{", timeout: Double(p["seconds"]! + 60))
        let serverCPU = try processCPUSeconds(server.pid) - cpuBefore
        client.wait()
        let requests = try number(result, "requests")
        guard try number(result, "errors") == 0 else { throw HarnessError("\(side): pingpong reported errors: \(result)") }
        var m = Measurement(value: requests / (try number(result, "seconds")), metrics: [
            // The same measure for every side (the C server too): the server process's CPU over the timed phase.
            "server_cpu_us_per_req": serverCPU * 1e6 / requests,
            "p50_ms": try number(result, "p50_us") / 1000,
            "p99_ms": try number(result, "p99_us") / 1000,
            "p999_ms": try number(result, "p999_us") / 1000,
        ])
        if side != .limit {
            server.send("report")
            let report = try server.expectJSON("report ")
            m.metrics["allocs_per_req"] = try number(report, "allocs") / requests
            if side == .ours { m.metrics["chain_nodes_allocated"] = try number(report, "chain_nodes_allocated") }
        }
        return m
    }

    func serve(_ side: Side, _ arguments: Arguments) throws { try serveEcho(side, arguments) }
}

