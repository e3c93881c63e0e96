// What every server child shares: starting a reactor pool or a NIO event loop group listening on 127.0.0.1 with
// the same settings (loops, backlog 4096, TCP_NODELAY), talking to the parent over standard input and output,
// and the echo servers of the many-connection scenarios (each library's own idiom).
import CBenchSupport
import Dispatch
import Foundation
import Glibc
import Synchronization
import NIOCore
import NIOPosix
import ZeroCopyReactor

/// Prints one line to the parent at once.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

func jsonLine(_ object: [String: Any]) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
}

/// Reads one line of standard input; nil at EOF.
func readCommand() -> String? { Swift.readLine(strippingNewline: true) }

func startOurs(_ arguments: Arguments, handler: @escaping @Sendable (Connection) -> any ConnectionHandler) throws -> ReactorPool {
    var configuration = ReactorConfiguration(loops: arguments.int("loops"))
    // For attributing allocations only (not used by tools/bench): ZCRB_NO_METRICS=1 turns the loops' metrics timer off.
    if ProcessInfo.processInfo.environment["ZCRB_NO_METRICS"] == "1" { configuration.metricsIntervalNanos = nil }
    let pool = try ReactorPool(configuration: configuration)
    let address = try pool.listen(host: "127.0.0.1", port: 0, handler: handler)
    say("port \(address.port)")
    return pool
}

func startNIO(_ arguments: Arguments, handler: @escaping @Sendable () -> any ChannelHandler) throws -> MultiThreadedEventLoopGroup {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: arguments.int("loops"))
    let channel = try ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 4096)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler()) }
        }
        .bind(host: "127.0.0.1", port: 0).wait()
    say("port \(channel.localAddress!.port!)")
    return group
}

/// The parent's commands to a server child until EOF: "count" starts counting allocations and CPU,
/// "report" prints "report {allocs, cpu_s}" for the time since.
func serveCommands(extra: () -> [String: Any] = { [:] }) {
    var cpuStart = cpuSeconds()
    while let command = readCommand() {
        switch command {
        case "count":
            cpuStart = cpuSeconds()
            zcrb_alloc_counting(1)
            say("ok")
        case "report":
            let allocs = zcrb_alloc_count()
            zcrb_alloc_counting(0)
            var object = extra()
            object["allocs"] = allocs
            object["cpu_s"] = cpuSeconds() - cpuStart
            say("report " + jsonLine(object))
        default:
            say("error unknown command \(command)")
        }
    }
}

/// Runs an echo server (ours: the library's `EchoHandler`; NIO: write in channelRead, flush in
/// channelReadComplete) until the parent closes standard input.
func serveEcho(_ side: Side, _ arguments: Arguments) throws {
    switch side {
    case .ours:
        let pool = try startOurs(arguments) { _ in EchoHandler() }
        serveCommands {
            let counters = pool.counters()
            return ["read_buffers_allocated": counters.reduce(0) { $0 + $1.readBuffersAllocated },
                    "chain_nodes_allocated": counters.reduce(0) { $0 + $1.chainNodesAllocated }]
        }
        pool.shutdown()
    case .oursAsync:
        // The same echo through the async face: `BuiltinServer.serveAsync` (for each inbound slice, write it back).
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: arguments.int("loops")))
        let listening = DispatchSemaphore(value: 0)
        let port = Mutex(0)
        let server = Task {
            try await BuiltinServer(mode: .echo).serveAsync(on: pool, host: "127.0.0.1", port: 0) { address in
                port.withLock { $0 = address.port }
                listening.signal()
            }
        }
        listening.wait()
        say("port \(port.withLock { $0 })")
        serveCommands()
        server.cancel()
        pool.shutdown()
    case .nio:
        let group = try startNIO(arguments) { NIOEchoHandler() }
        serveCommands()
        try group.syncShutdownGracefully()
    default:
        throw HarnessError("no \(side) echo server")
    }
}

/// NIO's echo idiom (swift-nio's own EchoServer example).
final class NIOEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Starts a plain thread (for the producers that write from outside the loops).
func startThread(_ body: @escaping @Sendable () -> Void) {
    let thread = Thread { body() }
    thread.stackSize = 1 << 20
    thread.start()
}

/// Memory the payload of a scenario lives in: one allocation, filled (so every page is resident) before timing.
final class PayloadBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer
    init(count: Int) {
        bytes = .allocate(byteCount: count, alignment: 4096)
        for i in stride(from: 0, to: count, by: 1) { bytes[i] = UInt8(truncatingIfNeeded: i % 251) }
    }
    deinit { bytes.deallocate() }

    /// A Slice of `count` bytes at `offset`, owned by this buffer.
    func slice(at offset: Int, count: Int) -> ZeroCopyReactor.Slice {
        ZeroCopyReactor.Slice(unsafeBytes: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count]), owner: self)
    }

    /// A NIO ByteBuffer with the same bytes (NIO's own storage: one copy, made once, before timing).
    func byteBuffer() -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: bytes.count)
        b.writeBytes(UnsafeRawBufferPointer(bytes))
        return b
    }
}
