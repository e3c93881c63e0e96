// `zcr serve`: the reactor pool as a real server in echo, sink or blast mode, until SIGINT or SIGTERM.
// Run-time failures are one line on stderr and exit 1.
import ArgumentParser
import Glibc
import Logging
import ZeroCopyReactor

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a TCP server on the reactor pool.")

    enum Mode: String, ExpressibleByArgument, CaseIterable { case echo, sink, blast }

    @Option(help: "Address to listen on (IPv4 or IPv6).") var host = "127.0.0.1"
    @Option(help: "Port; 0 picks a free one and prints it.") var port = 7000
    @Option(help: "Number of loops (threads).") var threads = ReactorConfiguration.defaultLoops
    @Option(help: "echo: write back what is read; sink: read and discard; blast: send --blast-bytes, then close.")
    var mode: Mode = .echo
    @Option(help: "Bytes each blast connection receives.") var blastBytes = 1 << 30
    @Option(help: "Size of the slices blast cuts from its one payload.") var sliceBytes = 64 * 1024
    @Option(help: "SO_SNDBUF of each connection in bytes (default: the kernel's autotuning).") var sendBuffer: Int32?
    @Option(help: "SO_RCVBUF of each connection in bytes (default: the kernel's autotuning).") var receiveBuffer: Int32?

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard threads <= 1024 else { throw ValidationError("--threads must be at most 1024, not \(threads)") }
        guard blastBytes >= 0 else { throw ValidationError("--blast-bytes must not be negative") }
        guard sliceBytes >= 1 else { throw ValidationError("--slice-bytes must be at least 1") }
        if let b = sendBuffer, b < 1 { throw ValidationError("--send-buffer must be at least 1, not \(b)") }
        if let b = receiveBuffer, b < 1 { throw ValidationError("--receive-buffer must be at least 1, not \(b)") }
    }

    /// Bad options exit 64 with usage (ValidationError, from `validate`); a failure at run time (the port is taken,
    /// no descriptors) prints one line on stderr and exits 1.
    func run() throws {
        let signals = Signals.blockTermination()
        var configuration = ReactorConfiguration(loops: threads)
        configuration.socketSendBuffer = sendBuffer
        configuration.socketReceiveBuffer = receiveBuffer
        configuration.logger = Logger(label: "zcr serve", factory: { StreamLogHandler.standardError(label: $0) })
        configuration.logger.logLevel = .warning  // accept trouble and the like; stdout stays the command's own
        let pool: ReactorPool
        do {
            pool = try ReactorPool(configuration: configuration)
        } catch {
            Output.error("zcr serve: cannot start the reactor pool: \(error)")
            throw ExitCode.failure
        }
        let server = BuiltinServer(mode: ServeMode(rawValue: mode.rawValue)!, blastBytes: blastBytes, sliceBytes: sliceBytes)
        let address: SocketAddress
        do {
            address = try pool.listen(host: host, port: port, handler: server.handler(for:))
        } catch {
            pool.shutdown()
            let place = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            Output.error("zcr serve: cannot listen on \(place): \(error)")
            throw ExitCode.failure
        }
        Output.line("listening on \(address) (\(threads) loops)")
        let signal = signals.wait()
        print("signal \(signal): shutting down")
        pool.shutdown()
        for c in pool.counters() {
            let calls = "\(c.write.syscalls) calls (\(Output.fixed(c.slicesPerCall)) slices/call)"
            Output.line("loop \(c.loop): accepted \(c.connectionsAccepted), read \(c.bytesRead) B, wrote \(c.write.bytesWritten) B in "
                + "\(calls), partial \(c.write.partialWrites), EAGAIN \(c.write.wouldBlocks), "
                + "wakeups \(c.wakeups), copied \(c.bytesCopied) B")
        }
    }
}

/// SIGINT and SIGTERM, blocked in every thread (loops inherit the mask) and taken with sigwait.
enum Signals {
    struct Waiter {
        var set: sigset_t
        func wait() -> Int32 {
            var s = set
            var signal: Int32 = 0
            sigwait(&s, &signal)
            return signal
        }
    }

    static func blockTermination() -> Waiter {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        return Waiter(set: set)
    }
}
