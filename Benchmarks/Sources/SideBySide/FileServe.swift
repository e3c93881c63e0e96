// file-serve: 4 clients each read one file of 1 GiB (256 MiB with --quick), already in the page cache, to EOF with
// limit/reader.c (256 KiB receives). The timed readers discard what they receive (`recv(fd, NULL, len, MSG_TRUNC)`:
// Linux TCP drops the bytes without copying them to user space), so the one client core no longer copies 4 GiB
// and the server is the bottleneck; after the timed phase one more reader (`verify251`) copies the whole file and
// checks every byte, untimed, so every run of every side still proves byte-exact delivery. Ours: `FileHandler` with sendfile (an `OpenFile` region), and with slices of one
// read-only mapping (`MappedFile`, sent with sendmsg). NIO: a `FileRegion` per connection (NIO's own sendfile
// path), closed when its write completes. Headline: GB/s over the 4 streams; beside it, server CPU per GB and how
// busy the server's and the client's cores were (which side set the pace).
import ChildProcess
import Foundation
import Glibc
import NIOCore
import NIOPosix
import ZeroCopyReactor

struct FileServeScenario: Scenario {
    let name = "file-serve"
    let title = "4 clients x a file in the page cache (sendfile, mmap slices, NIO FileRegion)"
    let unit = "GB/s"
    let higherIsBetter = true

    func sides(_ context: Context) -> [Side] { [.ours, .oursMmap, .nio] }

    func parameters(_ context: Context) -> [String: Int] {
        ["bytes": context.quick ? 256 << 20 : 1 << 30, "clients": 4, "read": 256 << 10]
    }

    /// The file every side serves: made once per size, byte i = i % 251, and read through once so it is cached.
    static func path(bytes: Int) -> String { NSTemporaryDirectory() + "zcr-file-serve-\(bytes).bin" }

    static func ensureFile(bytes: Int) throws -> String {
        let path = path(bytes: bytes)
        var st = stat()
        if stat(path, &st) != 0 || Int(st.st_size) != bytes {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw HarnessError("cannot create \(path)") }
            defer { close(fd) }
            let chunk = (0..<(251 * 4096)).map { UInt8($0 % 251) }
            var left = bytes
            while left > 0 {
                let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, min($0.count, left)) }
                guard n > 0 else { throw HarnessError("cannot write \(path)") }
                left -= n
            }
        }
        // Into the page cache (and proof it reads back whole).
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            total += n
        }
        guard total == bytes else { throw HarnessError("\(path) reads back \(total) of \(bytes) bytes") }
        return path
    }

    func measure(_ side: Side, _ context: Context) throws -> Measurement {
        let p = parameters(context)
        let bytes = p["bytes"]!, clients = p["clients"]!
        _ = try Self.ensureFile(bytes: bytes)
        let (server, port) = try context.startServer(self, side)
        defer { server.terminate() }
        let cpuBefore = try processCPUSeconds(server.pid)
        let coresBefore = try context.cores.map { (try coreSeconds($0.server), try coreSeconds($0.client)) }
        let readers = try (0..<clients).map { _ in
            try context.startClient([context.limitTool("reader"), "127.0.0.1", "\(port)", "\(p["read"]!)", "64", "discard"])
        }
        var longest = 0.0
        for reader in readers {
            let (got, seconds) = try parseReader(try reader.expect("bytes", timeout: 300))
            reader.wait()
            guard Int(got) == bytes else { throw HarnessError("\(side): a reader got \(Int(got)) of \(bytes) bytes") }
            longest = max(longest, seconds)
        }
        let cpu = try processCPUSeconds(server.pid) - cpuBefore
        let coresAfter = try context.cores.map { (try coreSeconds($0.server), try coreSeconds($0.client)) }
        let gigabytes = Double(bytes * clients) / 1e9
        // Untimed: one reader that copies and checks every byte (byte i of the file is i % 251).
        let verifier = try context.startClient(
            [context.limitTool("reader"), "127.0.0.1", "\(port)", "\(p["read"]!)", "64", "verify251"])
        let checked = try verifier.expect("", timeout: 300)
        verifier.wait()
        let (verified, _) = try parseReader(checked)  // "mismatch N" fails here
        guard Int(verified) == bytes else { throw HarnessError("\(side): the verifying reader got \(checked)") }
        // Beside the server's CPU per GB: how busy each core was over the timed phase, and how much of it the
        // hypervisor stole. A server below 1.0 with the client core near 1.0 means the readers, not the server, set
        // the GB/s; steal of more than a few percent means the run measured the neighbours too.
        var metrics = ["server_cpu_s_per_gb": cpu / gigabytes, "server_core_busy": cpu / longest]
        if let before = coresBefore, let after = coresAfter {
            metrics["client_core_busy"] = (after.1.busy - before.1.busy) / longest
            metrics["server_core_steal"] = (after.0.steal - before.0.steal) / longest
            metrics["client_core_steal"] = (after.1.steal - before.1.steal) / longest
        }
        return Measurement(value: gigabytes / longest, metrics: metrics)
    }

    func serve(_ side: Side, _ arguments: Arguments) throws {
        let path = Self.path(bytes: arguments.int("bytes"))
        switch side {
        case .ours, .oursMmap:
            let file = try ServedFile(path: path, io: side == .ours ? .sendfile : .mmap)
            let pool = try startOurs(arguments) { _ in FileHandler(file: file) }
            serveCommands()
            pool.shutdown()
        case .nio:
            let group = try startNIO(arguments) { NIOFileServer(path: path) }
            serveCommands()
            try group.syncShutdownGracefully()
        default:
            throw HarnessError("no \(side) file server")
        }
    }
}

/// NIO's file-serving idiom: a FileRegion of the whole file per connection, written and flushed, then the file
/// handle and the channel are closed once the write completes.
final class NIOFileServer: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = FileRegion
    let path: String

    init(path: String) { self.path = path }

    func channelActive(context: ChannelHandlerContext) {
        do {
            let handle = try NIOFileHandle(_deprecatedPath: path)
            let region = try FileRegion(fileHandle: handle)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(region)).whenComplete { _ in
                try? handle.close()
                channel.close(promise: nil)
            }
        } catch {
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
