// conn-storm: 10,000 connections, at most 1,000 in flight (limit/storm.c): each connects, sends one byte, reads
// its echo and closes. Connections per second. Servers: each library's echo idiom; limit: limit/echo.c.
import ChildProcess

struct ConnStormScenario: Scenario {
    let name = "conn-storm"
    let title = "10,000 connections opened, one byte echoed, closed"
    let unit = "conn/s"
    let higherIsBetter = true

    func sides(_ context: Context) -> [Side] { [.ours, .nio, .limit] }

    func parameters(_ context: Context) -> [String: Int] {
        ["connections": context.quick ? 2000 : 10000, "concurrency": 1000]
    }

    func measure(_ side: Side, _ context: Context) throws -> Measurement {
        let p = parameters(context)
        let (server, port) = side == .limit
            ? try context.startLimitServer(["echo", "\(context.loops)"])
            : try context.startServer(self, side)
        defer { server.terminate() }
        if side != .limit {
            server.send("count")
            _ = try server.expect("ok")
        }
        let client = try context.startClient([context.limitTool("storm"), "127.0.0.1", "\(port)", "\(p["connections"]!)",
                                             "\(p["concurrency"]!)"])
        let result = try client.expectJSON("{", timeout: 180)
        client.wait()
        let connections = try number(result, "connections")
        guard try number(result, "errors") == 0 else { throw HarnessError("\(side): storm reported errors: \(result)") }
        var m = Measurement(value: connections / (try number(result, "seconds")))
        if side != .limit {
            server.send("report")
            let report = try server.expectJSON("report ")
            m.metrics["allocs_per_conn"] = try number(report, "allocs") / connections
            m.metrics["server_cpu_us_per_conn"] = try number(report, "cpu_s") * 1e6 / connections
        }
        return m
    }

    func serve(_ side: Side, _ arguments: Arguments) throws { try serveEcho(side, arguments) }
}
