// `zcr serve`: the reactor pool as a real server in echo, sink or blast mode, until SIGINT or SIGTERM (a graceful
// drain of up to 5 s; a second signal cuts it short). Run-time failures are one line on stderr and exit 1.
import ArgumentParser
import Glibc
import Logging
import Synchronization
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
        // A reader that goes away (`zcr serve | head -1`) must not kill the server: its writes to stdout then fail
        // with EPIPE, which Output drops. The library itself never needs this (it sends with MSG_NOSIGNAL).
        signal(SIGPIPE, SIG_IGN)
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
        var first = signals.wait()
        while first == SIGUSR1 { first = signals.wait() }  // a stray SIGUSR1 before shutdown means nothing
        Output.line("signal \(first): shutting down")
        drain(pool, signals)
        for c in pool.counters() {
            let calls = "\(c.write.syscalls) calls (\(Output.fixed(c.slicesPerCall)) slices/call)"
            Output.line("loop \(c.loop): accepted \(c.connectionsAccepted), read \(c.bytesRead) B, wrote \(c.write.bytesWritten) B in "
                + "\(calls), partial \(c.write.partialWrites), EAGAIN \(c.write.wouldBlocks), "
                + "wakeups \(c.wakeups), copied \(c.bytesCopied) B")
        }
    }

    /// Runs the pool's graceful shutdown on a thread of its own while this thread waits for it to end, or for a
    /// second SIGINT/SIGTERM, which cuts the drain short (every connection still open is aborted). The shutdown
    /// thread says it is done with SIGUSR1 to this thread, after setting `done`, so a SIGUSR1 from elsewhere
    /// cannot end the wait early.
    private func drain(_ pool: ReactorPool, _ signals: Signals.Waiter) {
        final class Done: Sendable { let flag = Atomic<Bool>(false) }
        let done = Done()
        let waiter = pthread_self()
        let thread = Signals.startThread {
            pool.shutdown()
            // Releasing: pairs with the acquiring load below, so the loops' final counters are seen after it.
            done.flag.store(true, ordering: .releasing)
            pthread_kill(waiter, SIGUSR1)
        }
        var cut = false
        while !done.flag.load(ordering: .acquiring) {
            let signal = signals.wait()
            if signal == SIGUSR1 || cut { continue }
            cut = true
            let open = pool.counters().reduce(0) { $0 + $1.connectionsOpen }
            Output.line("second signal \(signal): aborting \(open) connection(s)")
            pool.cutShutdownShort()
        }
        pthread_join(thread, nil)
    }
}

/// SIGINT and SIGTERM (and SIGUSR1, the shutdown thread's "done"), blocked in every thread (loops inherit the mask)
/// and taken with sigwait.
enum Signals {
    struct Waiter: @unchecked Sendable {
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
        sigaddset(&set, SIGUSR1)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        return Waiter(set: set)
    }

    /// Starts a joinable pthread running `body` (it inherits the blocked signals of the calling thread).
    static func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
        final class Box: Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        var tid = pthread_t()
        let arg = Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = pthread_create(&tid, nil, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, arg)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return tid
    }
}
