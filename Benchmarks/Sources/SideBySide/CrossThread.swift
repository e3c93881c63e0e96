// cross-thread: a thread that is not the connection's loop writes AND flushes every 64-byte message on its own
// (1 Mi of them); the client (limit/reader.c) reads 256 KiB at a time. Ours: connection.write(slice) per message.
// NIO: channel.writeAndFlush(slice) per message (each one hops to the loop). Both producers wait (yielding) while
// the connection says it is not writable. Allocations are counted from message 64 Ki to the end of sending.
import CBenchSupport
import ChildProcess
import Dispatch
import Glibc
import NIOCore
import NIOPosix
import ZeroCopyReactor

struct CrossThreadScenario: Scenario {
    let name = "cross-thread"
    let title = "write + flush of every 64-byte message from another thread"
    let unit = "msgs/s"
    let higherIsBetter = true
    static let warmMessages = 1 << 16

    func sides(_ context: Context) -> [Side] { [.ours, .nio] }

    func parameters(_ context: Context) -> [String: Int] {
        ["messages": context.quick ? 1 << 18 : 1 << 20, "slice": 64]
    }

    func measure(_ side: Side, _ context: Context) throws -> Measurement {
        let p = parameters(context)
        let bytes = p["messages"]! * p["slice"]!
        let (server, port) = try context.startServer(self, side)
        defer { server.terminate() }
        let reader = try context.startClient([context.limitTool("reader"), "127.0.0.1", "\(port)", "262144", "\(p["slice"]!)"])
        let (got, seconds) = try parseReader(try reader.expect("bytes", timeout: 600))
        reader.wait()
        guard got == Double(bytes) else { throw HarnessError("\(side): reader got \(Int(got)) of \(bytes) bytes") }
        let result = try server.expectJSON("result ")
        return Measurement(value: Double(p["messages"]!) / seconds, metrics: [
            "allocs_per_msg": try number(result, "allocs") / Double(p["messages"]! - Self.warmMessages),
            "server_cpu_ns_per_msg": try number(result, "cpu_s") * 1e9 / Double(p["messages"]!),
        ])
    }

    func serve(_ side: Side, _ arguments: Arguments) throws {
        let messages = arguments.int("messages"), slice = arguments.int("slice")
        let payload = PayloadBuffer(count: slice * 1024)
        let done = DispatchSemaphore(value: 0)
        let cpuStart = cpuSeconds()
        switch side {
        case .ours:
            let pool = try startOurs(arguments) { _ in OursCrossThread(payload: payload, messages: messages, slice: slice, done: done) }
            done.wait()
            reportResult(cpuStart)
            pool.shutdown()
        case .nio:
            let buffer = payload.byteBuffer()
            let group = try startNIO(arguments) { NIOCrossThread(payload: buffer, messages: messages, slice: slice, done: done) }
            done.wait()
            reportResult(cpuStart)
            try group.syncShutdownGracefully()
        default:
            throw HarnessError("no \(side) server")
        }
    }
}

final class OursCrossThread: ConnectionHandler {
    let payload: PayloadBuffer
    let messages: Int, slice: Int
    let done: DispatchSemaphore
    init(payload: PayloadBuffer, messages: Int, slice: Int, done: DispatchSemaphore) {
        self.payload = payload
        self.messages = messages
        self.slice = slice
        self.done = done
    }

    func connectionOpened(_ connection: Connection) {
        let (payload, messages, slice) = (self.payload, self.messages, self.slice)
        startThread {
            for i in 0..<messages {
                if i == CrossThreadScenario.warmMessages { zcrb_alloc_counting(1) }
                while !connection.isWritable { sched_yield() }
                do { try connection.write(payload.slice(at: (i % 1024) * slice, count: slice)) } catch { return }
            }
            connection.close()
        }
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) { done.signal() }
}

final class NIOCrossThread: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let payload: ByteBuffer
    let messages: Int, slice: Int
    let done: DispatchSemaphore
    init(payload: ByteBuffer, messages: Int, slice: Int, done: DispatchSemaphore) {
        self.payload = payload
        self.messages = messages
        self.slice = slice
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        let (payload, messages, slice) = (self.payload, self.messages, self.slice)
        startThread {
            for i in 0..<messages {
                if i == CrossThreadScenario.warmMessages { zcrb_alloc_counting(1) }
                while !channel.isWritable { sched_yield() }
                let s = payload.getSlice(at: (i % 1024) * slice, length: slice)!
                if i == messages - 1 {
                    channel.writeAndFlush(s).whenComplete { _ in channel.close(promise: nil) }
                } else {
                    channel.writeAndFlush(s, promise: nil)
                }
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) { done.signal() }
}
