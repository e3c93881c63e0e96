// `zcr serve`: the reactor pool as a real server in echo, sink, blast or file mode, until SIGINT or SIGTERM (a graceful
// drain of up to 5 s; a second signal cuts it short). Run-time failures are one line on stderr and exit 1.
import ArgumentParser
import Dispatch
import Glibc
import Logging
import Synchronization
import ZeroCopyLoad
import ZeroCopyProfiler
@_spi(CopyControl) import ZeroCopyReactor
import ZeroCopyText

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a TCP server on the reactor pool.")

    enum Mode: String, ExpressibleByArgument, CaseIterable { case echo, sink, blast, file }
    enum FileMode: String, ExpressibleByArgument, CaseIterable { case sendfile, mmap }
    enum API: String, ExpressibleByArgument, CaseIterable { case callback, async }

    @Option(help: "Address to listen on (IPv4 or IPv6).") var host = "127.0.0.1"
    @Option(help: "Port; 0 picks a free one and prints it.") var port = 7000
    @Option(help: "Number of loops (threads).") var threads = ReactorConfiguration.defaultLoops
    @Option(help: "echo: write back what is read; sink: read and discard; blast: send --blast-bytes, then close; file: send --file, then close.")
    var mode: Mode = .echo
    @Option(help: "The file --mode file sends to every connection.") var file: String?
    @Option(help: "sendfile: from the page cache with sendfile(2); mmap: slices of a read-only mapping.")
    var fileIO: FileMode = .sendfile
    @Flag(help: "Do not ask the kernel to read the file into the page cache at start (posix_fadvise WILLNEED).")
    var noReadahead = false
    @Option(help: "Send calls of at least this many bytes ask for MSG_ZEROCOPY (default: never). On loopback the kernel copies anyway and says so.")
    var zerocopyThreshold: String?
    @Option(help: "Bytes each blast connection receives.") var blastBytes = 1 << 30
    @Option(help: "Size of the slices blast cuts from its one payload.") var sliceBytes = 64 * 1024
    @Option(help: "SO_SNDBUF of each connection in bytes (default: the kernel's autotuning).") var sendBuffer: Int32?
    @Option(help: "SO_RCVBUF of each connection in bytes (default: the kernel's autotuning).") var receiveBuffer: Int32?
    @Option(help: "callback: the handler core; async: the same servers through ReactorPool.serve (one task each).")
    var api: API = .callback
    @Option(help: "Close connections with nothing read or written for this long (e.g. 30s; default: never).")
    var idleTimeout: String?
    @Option(help: "Reset connections whose pending bytes the peer takes none of for this long (default 60s).")
    var writeStallTimeout: String?
    @Option(help: "Accepted connections open at once; more are closed at once and counted (default: no limit).")
    var maxConnections: String?
    @Option(help: "Read-buffer memory per loop that retained slices may hold (default 64MiB).")
    var readMemoryBudget: String?
    @Option(help: "Write the counters as JSON to this file at exit (checked before the server starts).")
    var statsJSON: String?
    @Option(
        help: ArgumentHelp(
            "Serve live profiling snapshots on this Unix socket (mode 0600) for zcr profile --attach; turns on the "
                + "iovec checks.", valueName: "path"))
    var profileSocket: String?
    @Option(
        help: ArgumentHelp(
            "echo, blast: copy every send first, so that zcr profile --attach must catch it: allocate (a new buffer "
                + "per send) or reuse (one staging buffer per connection, allocated once).", valueName: "kind"))
    var copyControl: CopyControlKind?
    enum CopyControlKind: String, ExpressibleByArgument, CaseIterable { case allocate, reuse }

    func validate() throws {
        if copyControl != nil, mode != .echo, mode != .blast {
            throw ValidationError("--copy-control is for --mode echo and blast, not \(mode.rawValue)")
        }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard threads <= 1024 else { throw ValidationError("--threads must be at most 1024, not \(threads)") }
        guard blastBytes >= 0 else { throw ValidationError("--blast-bytes must not be negative") }
        guard sliceBytes >= 1 else { throw ValidationError("--slice-bytes must be at least 1") }
        if let b = sendBuffer, b < 1 { throw ValidationError("--send-buffer must be at least 1, not \(b)") }
        if let b = receiveBuffer, b < 1 { throw ValidationError("--receive-buffer must be at least 1, not \(b)") }
        if mode == .file && file == nil { throw ValidationError("--mode file needs --file PATH") }
        if mode != .file && file != nil { throw ValidationError("--file is only for --mode file") }
        _ = try bounds()
        _ = try zeroCopyThreshold()
    }

    private func zeroCopyThreshold() throws -> Int? {
        guard let t = zerocopyThreshold else { return nil }
        do {
            let n = try ArgumentValues.size(t, flag: "--zerocopy-threshold")
            guard n >= 1 else { throw ValidationError("--zerocopy-threshold must be at least 1 byte, not \(n)") }
            return n
        } catch let error as LoadError {
            throw ValidationError(error.description)
        }
    }

    /// The time and memory bounds from the options, each checked with one clear line.
    private func bounds() throws -> (timeouts: ConnectionTimeouts, max: Int?, budget: Int?) {
        do {
            var timeouts = ConnectionTimeouts()
            if let t = idleTimeout {
                let d = try ArgumentValues.duration(t, flag: "--idle-timeout")
                guard d > .zero else { throw ValidationError("--idle-timeout must be greater than 0") }
                timeouts.idle = d
            }
            if let t = writeStallTimeout {
                let d = try ArgumentValues.duration(t, flag: "--write-stall-timeout")
                guard d > .zero else { throw ValidationError("--write-stall-timeout must be greater than 0") }
                timeouts.writeStall = d
            }
            let max = try maxConnections.map { try ArgumentValues.count($0, flag: "--max-connections") }
            if let max, max < 1 { throw ValidationError("--max-connections must be at least 1, not \(max)") }
            let budget = try readMemoryBudget.map { try ArgumentValues.size($0, flag: "--read-memory-budget") }
            if let budget, budget < 64 * 1024 {
                throw ValidationError("--read-memory-budget must be at least one read buffer (64KiB), not \(budget)")
            }
            return (timeouts, max, budget)
        } catch let error as LoadError {
            throw ValidationError(error.description)
        }
    }

    /// Bad options exit 64 with usage (ValidationError, from `validate`); a failure at run time (the port is taken,
    /// no descriptors) prints one line on stderr and exits 1.
    func run() throws {
        // A reader that goes away (`zcr serve | head -1`) must not kill the server: its writes to stdout then fail
        // with EPIPE, which Output drops. The library itself never needs this (it sends with MSG_NOSIGNAL).
        signal(SIGPIPE, SIG_IGN)
        LinkedMemcpyCounter.register()
        let signals = Signals.blockTermination()
        var configuration = ReactorConfiguration(loops: threads)
        let (timeouts, max, budget) = try bounds()
        configuration.timeouts = timeouts
        configuration.maxConnections = max
        if let budget { configuration.readMemoryBudget = budget }
        if let path = statsJSON, let problem = Output.unwritable(path) {
            Output.error("zcr serve: --stats-json \(path): \(problem)")
            throw ExitCode.failure
        }
        configuration.zeroCopyThreshold = try zeroCopyThreshold()
        if profileSocket != nil { configuration.verifyIovecs = true }  // the attached verdict's iovec evidence
        configuration.copyControl = copyControl.flatMap { CopyControl(rawValue: $0.rawValue) }
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
        var served: ServedFile? = nil
        if mode == .file, let path = file {
            do {
                served = try ServedFile(path: path, io: FileIO(rawValue: fileIO.rawValue)!, readAhead: !noReadahead)
            } catch {
                Output.error("zcr serve: --file \(path): \(error)")
                throw ExitCode.failure
            }
        }
        let server = BuiltinServer(
            mode: ServeMode(rawValue: mode.rawValue)!, blastBytes: blastBytes, sliceBytes: sliceBytes, file: served)
        let address: SocketAddress
        do {
            switch api {
            case .callback: address = try pool.listen(host: host, port: port, handler: server.handler(for:))
            case .async: address = try Self.listenAsync(server, pool, host: host, port: port)
            }
        } catch {
            pool.shutdown()
            let place = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            Output.error("zcr serve: cannot listen on \(place): \(error)")
            throw ExitCode.failure
        }
        var endpoint: ProfilingEndpoint?
        if let path = profileSocket {
            do {
                endpoint = try ProfilingEndpoint(pool: pool, path: path)
            } catch {
                pool.shutdown()
                Output.error("zcr serve: --profile-socket \(error)")
                throw ExitCode.failure
            }
        }
        Output.line("listening on \(address) (\(threads) loops)")
        if let path = profileSocket { Output.line("profiling endpoint at \(path)") }
        var first = signals.wait()
        while first == SIGUSR1 { first = signals.wait() }  // a stray SIGUSR1 before shutdown means nothing
        Output.line("signal \(first): shutting down")
        endpoint?.close()  // before the loops stop: it reads their threads' counters
        drain(pool, signals)
        for c in pool.counters() {
            let calls = "\(c.write.syscalls) calls (\(Output.fixed(c.slicesPerCall)) slices/call)"
            Output.line("loop \(c.loop): accepted \(c.connectionsAccepted), read \(c.bytesRead) B, wrote \(c.write.bytesWritten) B in "
                + "\(calls), partial \(c.write.partialWrites), EAGAIN \(c.write.wouldBlocks), "
                + "wakeups \(c.wakeups), copied \(c.bytesCopied) B")
            Output.line("loop \(c.loop): aborted \(c.connectionsAborted), refused \(c.connectionsRefused), "
                + "timeouts idle \(c.idleTimeouts) stall \(c.writeStallTimeouts) close \(c.closeTimeouts), "
                + "read buffers allocated \(c.readBuffersAllocated) held \(c.readBuffersHeld), "
                + "paused for memory \(c.readPausesForMemory) times")
            if c.write.sendfileCalls > 0 {
                Output.line("loop \(c.loop): sendfile \(c.write.sendfileBytes) B in \(c.write.sendfileCalls) calls")
            }
            if configuration.zeroCopyThreshold != nil {
                let w = c.write
                let copiedNote = w.zeroCopyCompletions > 0 && w.zeroCopyCopied == w.zeroCopyCompletions
                    ? " (the kernel copied every one: on loopback and veth it always does)" : ""
                Output.line("loop \(c.loop): MSG_ZEROCOPY \(w.zeroCopyBytes) B in \(w.zeroCopySends) sends, "
                    + "\(w.zeroCopyCompletions) completions, \(w.zeroCopyCopied) copied\(copiedNote), "
                    + "\(w.zeroCopyFallbacks) ENOBUFS fallbacks, \(c.zeroCopyDeadlineReleases) released at the deadline")
            }
        }
        let counters = pool.counters()
        let aborted = counters.reduce(0) { $0 + $1.connectionsAborted }
        if aborted > 0 { Output.error("zcr serve: \(aborted) connection(s) were aborted (reset): their output was cut") }
        if let path = statsJSON {
            if let problem = Output.write(Self.statsJSON(counters), to: path) {
                Output.error("zcr serve: --stats-json \(path): \(problem)")
                throw ExitCode.failure
            }
        }
    }

    /// Starts `ReactorPool.serve` in a task and waits until it listens (or failed to).
    private static func listenAsync(_ server: BuiltinServer, _ pool: ReactorPool, host: String, port: Int) throws -> SocketAddress {
        let result = Mutex<Result<SocketAddress, any Error>?>(nil)
        let ready = DispatchSemaphore(value: 0)
        Task {
            do {
                try await server.serveAsync(on: pool, host: host, port: port) { address in
                    result.withLock { $0 = .success(address) }
                    ready.signal()
                }
            } catch {
                let first = result.withLock { r -> Bool in
                    if r != nil { return false }
                    r = .failure(error)
                    return true
                }
                if first { ready.signal() }
            }
        }
        ready.wait()
        return try result.withLock { $0! }.get()
    }

    /// The counters as JSON: every loop's, and their totals (with the process-wide count of slices not released).
    static func statsJSON(_ counters: [LoopCounters]) -> String {
        func fields(_ c: LoopCounters) -> [(String, Int)] {
            [("connections_accepted", c.connectionsAccepted), ("connections_open", c.connectionsOpen),
             ("connections_closed", c.connectionsClosed), ("connections_aborted", c.connectionsAborted),
             ("connections_refused", c.connectionsRefused), ("accept_errors", c.acceptErrors),
             ("idle_timeouts", c.idleTimeouts), ("write_stall_timeouts", c.writeStallTimeouts),
             ("close_timeouts", c.closeTimeouts), ("bytes_read", c.bytesRead),
             ("bytes_written", c.write.bytesWritten), ("bytes_copied", c.bytesCopied),
             ("read_buffers_allocated", c.readBuffersAllocated), ("read_buffers_freed", c.readBuffersFreed),
             ("read_buffers_free", c.readBuffersFree), ("read_buffers_held", c.readBuffersHeld),
             ("read_bytes_held", c.readBytesHeld), ("read_paused_for_memory", c.connectionsPausedForReadMemory),
             ("read_pauses_for_memory", c.readPausesForMemory), ("slices_outstanding", c.slicesOutstanding),
             ("sendfile_calls", c.write.sendfileCalls), ("sendfile_bytes", c.write.sendfileBytes),
             ("zerocopy_sends", c.write.zeroCopySends), ("zerocopy_bytes", c.write.zeroCopyBytes),
             ("zerocopy_completions", c.write.zeroCopyCompletions), ("zerocopy_copied", c.write.zeroCopyCopied),
             ("zerocopy_fallbacks", c.write.zeroCopyFallbacks), ("zerocopy_lingering", c.zeroCopyLingering),
             ("zerocopy_deadline_releases", c.zeroCopyDeadlineReleases)]
        }
        func object(_ pairs: [(String, Int)]) -> String {
            "{" + pairs.map { "\(Text.jsonQuoted($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
        }
        var totals = fields(LoopCounters())
        for c in counters {
            for (i, (_, v)) in fields(c).enumerated() { totals[i].1 += v }
        }
        for i in totals.indices where totals[i].0 == "slices_outstanding" {
            totals[i].1 = ReactorPool.slicesOutstandingInProcess
        }
        let loops = counters.map { c in object([("loop", c.loop)] + fields(c)) }
        return "{\"totals\": \(object(totals)), \"loops\": [\(loops.joined(separator: ", "))]}\n"
    }

    /// Runs the pool's graceful shutdown on a thread of its own while this thread waits for it to end, or for a
    /// second SIGINT/SIGTERM, which cuts the drain short (every connection still open is aborted). The shutdown
    /// thread says it is done with SIGUSR1 to this thread, after setting `done`, so a SIGUSR1 from elsewhere
    /// cannot end the wait early.
    private func drain(_ pool: ReactorPool, _ signals: Signals.Waiter) {
        final class Done: Sendable { let flag = Atomic<Bool>(false) }
        let done = Done()
        let waiter = pthread_self()
        let thread = PosixThread.spawn(name: "zcr-drain", joinable: true) {
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
        PosixThread.join(thread)
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
}
