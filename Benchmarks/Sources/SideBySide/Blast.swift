// blast-1g: one connection, the whole payload (1 GiB) handed over in ONE write; the client (limit/reader.c) reads
// 256 KiB at a time until EOF. Ours: one Slice of the buffer, then close(). NIO: one writeAndFlush of a ByteBuffer
// of that size, close when its promise completes. Limit: limit/writer.c (write() until done) and iperf3 -l 1M.
import CBenchSupport
import ChildProcess
import Dispatch
import Foundation
import Glibc
import NIOCore
import NIOPosix
import ZeroCopyReactor

struct BlastScenario: Scenario {
    let name = "blast-1g"
    let title = "1 GiB in one write, client reads 256 KiB at a time"
    let unit = "GB/s"
    let higherIsBetter = true

    func sides(_ context: Context) -> [Side] { context.iperf3 == nil ? [.ours, .nio, .limit] : [.ours, .nio, .limit, .iperf3] }

    func parameters(_ context: Context) -> [String: Int] {
        ["bytes": context.quick ? 256 << 20 : 1 << 30, "read": 256 << 10]
    }

    func measure(_ side: Side, _ context: Context) throws -> Measurement {
        let p = parameters(context)
        if side == .iperf3 { return try measureIperf3(context) }
        let (server, port) = side == .limit
            ? try context.startLimitServer(["writer", "blast", "\(p["bytes"]!)"])
            : try context.startServer(self, side)
        defer { server.terminate() }
        let reader = try context.startClient([context.limitTool("reader"), "127.0.0.1", "\(port)", "\(p["read"]!)"])
        let (bytes, seconds) = try parseReader(try reader.expect("bytes", timeout: 300))
        reader.wait()
        guard bytes == Double(p["bytes"]!) else { throw HarnessError("\(side): reader got \(Int(bytes)) of \(p["bytes"]!) bytes") }
        var m = Measurement(value: bytes / seconds / 1e9)
        if side != .limit {
            let result = try server.expectJSON("result ")
            m.metrics["allocs"] = try number(result, "allocs")
            m.metrics["server_cpu_s"] = try number(result, "cpu_s")
        }
        return m
    }

    /// iperf3 -c 127.0.0.1 -l 1M (5 s, 2 s with --quick): the receiver's rate. The same with -l 256K (the read
    /// size of this scenario's client) is kept as a second figure.
    private func measureIperf3(_ context: Context) throws -> Measurement {
        let seconds = context.quick ? 2 : 5
        let large = try iperf3(context, length: "1M", seconds: seconds)
        let small = try iperf3(context, length: "256K", seconds: seconds)
        return Measurement(value: large, metrics: ["iperf3_256k_gbs": small])
    }

    private func iperf3(_ context: Context, length: String, seconds: Int) throws -> Double {
        let port = freePort()
        let server = try ChildProcess.start(context.pinned([context.iperf3!, "-s", "-1", "--forceflush", "-p", "\(port)"], server: true))
        defer { server.terminate() }
        _ = try server.expect("Server listening", timeout: 10)
        let client = try context.startClient([context.iperf3!, "-c", "127.0.0.1", "-p", "\(port)", "-l", length,
                                              "-t", "\(seconds)", "-J"])
        var text = ""
        while let line = try? client.readLine(timeout: 60) { text += line + "\n" }
        client.wait()
        guard let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let end = json["end"] as? [String: Any], let received = end["sum_received"] as? [String: Any]
        else { throw HarnessError("iperf3 printed no end.sum_received") }
        return try number(received, "bits_per_second") / 8 / 1e9
    }

    func serve(_ side: Side, _ arguments: Arguments) throws {
        let total = arguments.int("bytes")
        let done = DispatchSemaphore(value: 0)
        var cpuStart = 0.0
        switch side {
        case .ours:
            let payload = PayloadBuffer(count: total)
            let pool = try startOurs(arguments) { _ in OursBlast(payload: payload, done: done) }
            cpuStart = cpuSeconds()
            done.wait()
            report(cpuStart)
            pool.shutdown()
        case .nio:
            var buffer = ByteBufferAllocator().buffer(capacity: total)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { p in
                for i in 0..<total { p[i] = UInt8(truncatingIfNeeded: i % 251) }
                return total
            }
            let payload = buffer
            let group = try startNIO(arguments) { NIOBlast(payload: payload, done: done) }
            cpuStart = cpuSeconds()
            done.wait()
            report(cpuStart)
            try group.syncShutdownGracefully()
        default:
            throw HarnessError("no \(side) server")
        }
    }

    private func report(_ cpuStart: Double) {
        let allocs = zcrb_alloc_count()
        zcrb_alloc_counting(0)
        say("result " + jsonLine(["allocs": allocs, "cpu_s": cpuSeconds() - cpuStart]))
    }
}

final class OursBlast: ConnectionHandler {
    let payload: PayloadBuffer
    let done: DispatchSemaphore
    init(payload: PayloadBuffer, done: DispatchSemaphore) { self.payload = payload; self.done = done }

    func connectionOpened(_ connection: Connection) {
        zcrb_alloc_counting(1)
        try? connection.write(payload.slice(at: 0, count: payload.bytes.count))
        connection.close()
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) { done.signal() }
}

final class NIOBlast: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let payload: ByteBuffer
    let done: DispatchSemaphore
    init(payload: ByteBuffer, done: DispatchSemaphore) { self.payload = payload; self.done = done }

    func channelActive(context: ChannelHandlerContext) {
        zcrb_alloc_counting(1)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(payload)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) { done.signal() }
}
