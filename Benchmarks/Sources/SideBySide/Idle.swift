// idle-10k: resident memory per idle connection. The server (each library's echo idiom, or limit/echo.c) runs in
// its own process; limit/idle.c opens 10,000 connections in another process, echoes one byte on each (so every
// one was accepted and served), then holds them. Per connection: (server VmRSS with them - VmRSS before) / N.
import ChildProcess
import Foundation
import Glibc

struct IdleScenario: Scenario {
    let name = "idle-10k"
    let title = "resident memory per idle connection, 10,000 open"
    let unit = "B/conn"
    let higherIsBetter = false

    func sides(_ context: Context) -> [Side] { [.ours, .oursAsync, .nio, .limit] }

    func parameters(_ context: Context) -> [String: Int] { ["connections": context.quick ? 2000 : 10000] }

    func measure(_ side: Side, _ context: Context) throws -> Measurement {
        let n = parameters(context)["connections"]!
        let (server, port) = side == .limit
            ? try context.startLimitServer(["echo", "\(context.loops)"])
            : try context.startServer(self, side)
        defer { server.terminate() }
        if side != .limit {
            server.send("count")
            _ = try server.expect("ok")
        }
        usleep(300_000)
        guard let before = server.memory("VmRSS") else { throw HarnessError("no VmRSS for the server") }
        let client = try context.startClient([context.limitTool("idle"), "127.0.0.1", "\(port)", "\(n)"], input: true)
        defer { client.terminate() }
        _ = try client.expect("ready", timeout: 120)
        usleep(500_000)
        guard let after = server.memory("VmRSS") else { throw HarnessError("no VmRSS for the server") }
        var m = Measurement(value: Double(after - before) / Double(n), metrics: ["server_rss_mb": Double(after) / 1048576])
        if side != .limit {
            server.send("report")
            let report = try server.expectJSON("report ")
            m.metrics["allocs_per_conn"] = try number(report, "allocs") / Double(n)
        }
        return m
    }

    func serve(_ side: Side, _ arguments: Arguments) throws { try serveEcho(side, arguments) }
}
