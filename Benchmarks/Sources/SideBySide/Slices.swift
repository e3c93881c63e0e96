// slices-64: one connection sends N 64-byte slices of ONE 64 KiB buffer, flushed every 1024, as fast as the
// watermarks allow; the client (limit/reader.c) reads 256 KiB at a time. Ours: an OutboundMessage of 1024 slices,
// one write. NIO: 1024 context.write of ByteBuffer slices (getSlice shares the storage), then flush. Both refill
// on writabilityChanged. Limit: limit/writer.c, 1024 iovecs per writev.
// Allocations are counted from batch 64 on (steady state) to the end of sending.
import CBenchSupport
import ChildProcess
import Dispatch
import Glibc
import NIOCore
import NIOPosix
import ZeroCopyReactor

struct SlicesScenario: Scenario {
    let name = "slices-64"
    let title = "64-byte slices of one buffer, flushed every 1024"
    let unit = "msgs/s"
    let higherIsBetter = true
    static let warmBatches = 64

    func sides(_ context: Context) -> [Side] { [.ours, .nio, .limit] }

    func parameters(_ context: Context) -> [String: Int] {
        ["messages": context.quick ? 1 << 20 : 8 << 20, "slice": 64, "batch": 1024]
    }

    func measure(_ side: Side, _ context: Context) throws -> Measurement {
        let p = parameters(context)
        let bytes = p["messages"]! * p["slice"]!
        let (server, port) = side == .limit
            ? try context.startLimitServer(["writer", "slices", "\(bytes)", "\(p["slice"]!)"])
            : try context.startServer(self, side)
        defer { server.terminate() }
        let reader = try context.startClient([context.limitTool("reader"), "127.0.0.1", "\(port)", "262144", "\(p["slice"]!)"])
        let (got, seconds) = try parseReader(try reader.expect("bytes", timeout: 300))
        reader.wait()
        guard got == Double(bytes) else { throw HarnessError("\(side): reader got \(Int(got)) of \(bytes) bytes") }
        var m = Measurement(value: Double(p["messages"]!) / seconds)
        if side != .limit {
            let result = try server.expectJSON("result ")
            let counted = Double(p["messages"]! - Self.warmBatches * p["batch"]!)
            m.metrics["allocs_per_msg"] = try number(result, "allocs") / counted
            m.metrics["server_cpu_ns_per_msg"] = try number(result, "cpu_s") * 1e9 / Double(p["messages"]!)
        }
        return m
    }

    func serve(_ side: Side, _ arguments: Arguments) throws {
        let messages = arguments.int("messages"), slice = arguments.int("slice"), batch = arguments.int("batch")
        let payload = PayloadBuffer(count: slice * batch)
        let done = DispatchSemaphore(value: 0)
        let cpuStart: Double
        switch side {
        case .ours:
            let pool = try startOurs(arguments) { _ in
                OursSlices(payload: payload, messages: messages, slice: slice, batch: batch, done: done)
            }
            cpuStart = cpuSeconds()
            done.wait()
            reportResult(cpuStart)
            pool.shutdown()
        case .nio:
            let buffer = payload.byteBuffer()
            let group = try startNIO(arguments) {
                NIOSlices(payload: buffer, messages: messages, slice: slice, batch: batch, done: done)
            }
            cpuStart = cpuSeconds()
            done.wait()
            reportResult(cpuStart)
            try group.syncShutdownGracefully()
        default:
            throw HarnessError("no \(side) server")
        }
    }
}

/// Prints "result {allocs, cpu_s}" (allocations counted so far, CPU since `cpuStart`) and stops counting.
func reportResult(_ cpuStart: Double, extra: [String: Any] = [:]) {
    let allocs = zcrb_alloc_count()
    zcrb_alloc_counting(0)
    var object = extra
    object["allocs"] = allocs
    object["cpu_s"] = cpuSeconds() - cpuStart
    say("result " + jsonLine(object))
}

final class OursSlices: ConnectionHandler {
    let payload: PayloadBuffer
    let messages: Int, slice: Int, batch: Int
    let done: DispatchSemaphore
    private var sent = 0
    private var batches = 0

    init(payload: PayloadBuffer, messages: Int, slice: Int, batch: Int, done: DispatchSemaphore) {
        self.payload = payload
        self.messages = messages
        self.slice = slice
        self.batch = batch
        self.done = done
    }

    func connectionOpened(_ connection: Connection) { pump(connection) }

    func connection(_ connection: Connection, writabilityChanged isWritable: Bool) {
        if isWritable { pump(connection) }
    }

    private func pump(_ connection: Connection) {
        while sent < messages && connection.isWritable {
            let n = min(batch, messages - sent)
            var message = OutboundMessage()
            for i in 0..<n { message.append(payload.slice(at: i * slice, count: slice)) }
            do { try connection.write(&message) } catch { return }
            sent += n
            batches += 1
            if batches == SlicesScenario.warmBatches { zcrb_alloc_counting(1) }
        }
        if sent == messages { connection.close() }
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) { done.signal() }
}

final class NIOSlices: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let payload: ByteBuffer
    let messages: Int, slice: Int, batch: Int
    let done: DispatchSemaphore
    private var sent = 0
    private var batches = 0

    init(payload: ByteBuffer, messages: Int, slice: Int, batch: Int, done: DispatchSemaphore) {
        self.payload = payload
        self.messages = messages
        self.slice = slice
        self.batch = batch
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) { pump(context) }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { pump(context) }
    }

    private func pump(_ context: ChannelHandlerContext) {
        while sent < messages && context.channel.isWritable {
            let n = min(batch, messages - sent)
            for i in 0..<n {
                let s = payload.getSlice(at: i * slice, length: slice)!
                if sent + i == messages - 1 {
                    // The last write closes the channel once it is on the socket (NIO's close drops queued writes).
                    let channel = context.channel
                    context.write(wrapOutboundOut(s)).whenComplete { _ in channel.close(promise: nil) }
                } else {
                    context.write(wrapOutboundOut(s), promise: nil)
                }
            }
            context.flush()
            sent += n
            batches += 1
            if batches == SlicesScenario.warmBatches { zcrb_alloc_counting(1) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) { done.signal() }
}
