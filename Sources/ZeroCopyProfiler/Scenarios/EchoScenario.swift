// echo-1k: many client connections each send a 4 KiB message (a slice of one shared buffer), the server echoes
// the very buffer it read into (or, as the copy control, a copy of it), and each client sends its next message
// once the whole echo is back. Time-based: the runner stops it. It never allocates per message on the zero-copy path.
import Dispatch
import Synchronization
import ZeroCopyReactor

/// What every echo client and server handler share.
final class EchoShared: Sendable {
    let payload: Payload
    let copyControl: Bool
    let count = WriteCount()
    let running = Atomic<Bool>(false)
    let opened: Countdown
    let failures = Mutex<(count: Int, first: String?)>((0, nil))

    init(payload: Payload, copyControl: Bool, connections: Int) {
        self.payload = payload
        self.copyControl = copyControl
        opened = Countdown(connections)
    }

    func failed(_ what: String) {
        failures.withLock { f in
            f.count += 1
            if f.first == nil { f.first = what }
        }
        opened.completion.fail(what)
    }
}

/// The server side: writes back what it reads, without copying (or with, as the copy control).
final class CountingEcho: ConnectionHandler, @unchecked Sendable {
    private let shared: EchoShared
    init(shared: EchoShared) { self.shared = shared }

    func connection(_ connection: Connection, didRead bytes: InboundBytes) {
        shared.count.add()
        do throws(ReactorError) {
            if shared.copyControl {
                try connection.writeCopying(bytes.bytes)
            } else {
                try connection.write(bytes.retainedSlice())
            }
        } catch {
            connection.abort()
            return
        }
        if !connection.isWritable { connection.pauseReading() }
    }

    func connection(_ connection: Connection, writabilityChanged isWritable: Bool) {
        if isWritable { connection.resumeReading() } else { connection.pauseReading() }
    }
}

/// A client: sends one message, waits for all of it to come back, sends the next while the scenario runs.
final class PingClient: ConnectionHandler, @unchecked Sendable {
    private let shared: EchoShared
    // Loop only.
    private var received = 0

    init(shared: EchoShared) { self.shared = shared }

    func connectionOpened(_ connection: Connection) { shared.opened.tick() }

    /// Sends the first message (on the connection's loop).
    func start(_ connection: Connection) { send(connection) }

    func connection(_ connection: Connection, didRead bytes: InboundBytes) {
        received += bytes.count
        let size = shared.payload.count
        while received >= size {
            received -= size
            if shared.running.load(ordering: .relaxed) { send(connection) }
        }
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) {
        if let error, shared.running.load(ordering: .relaxed) { shared.failed("an echo client closed: \(error)") }
    }

    private func send(_ connection: Connection) {
        shared.count.add()
        do throws(ReactorError) {
            if shared.copyControl {
                try connection.writeCopying(shared.payload.raw(0..<shared.payload.count))
            } else {
                try connection.write(shared.payload.slice(0..<shared.payload.count))
            }
        } catch {
            connection.abort()
        }
    }
}

final class EchoScenario: ScenarioDriver, @unchecked Sendable {
    private let shared: EchoShared
    private let connections: Int
    private let warmup: Double
    private let duration: Double
    private let asyncServer: Bool
    private var server: Task<Void, any Error>?
    /// Set by `prepare` before any traffic.
    private var clients: [(Connection, PingClient)] = []

    init(options: ProfileOptions) {
        connections = options.connections
        warmup = options.warmupSeconds
        duration = options.durationSeconds
        asyncServer = options.asyncServer
        shared = EchoShared(
            payload: Payload(byteCount: options.echoMessageBytes), copyControl: options.copyControl,
            connections: options.connections)
    }

    func prepare(pool: ReactorPool) throws(ProfileError) {
        let shared = self.shared
        let address: SocketAddress
        if asyncServer {
            address = try startAsyncServer(pool: pool)
        } else {
            do {
                address = try pool.listen(host: "127.0.0.1", port: 0) { _ in CountingEcho(shared: shared) }
            } catch {
                throw .setup("cannot listen on 127.0.0.1: \(error)")
            }
        }
        for i in 0..<connections {
            let client = PingClient(shared: shared)
            do {
                clients.append((try pool.connect(to: address) { _ in client }, client))
            } catch {
                throw .setup("connection \(i + 1) of \(connections): \(error)")
            }
        }
        guard shared.opened.completion.wait(seconds: 60) else {
            throw .setup("\(connections) connections did not open within 60 s")
        }
        if let failure = shared.opened.completion.failure { throw .setup(failure) }
    }

    func startWarmUp() -> PhaseEnd {
        shared.running.store(true, ordering: .relaxed)
        for (connection, client) in clients {
            connection.loop.execute { client.start(connection) }
        }
        return .duration(seconds: warmup)
    }

    func startWindow() -> PhaseEnd { .duration(seconds: duration) }

    func stop() {
        shared.running.store(false, ordering: .relaxed)
        server?.cancel()
    }

    /// The async server: each connection in a handler task of `serve`, on its loop, echoing the slices it reads.
    private func startAsyncServer(pool: ReactorPool) throws(ProfileError) -> SocketAddress {
        let shared = self.shared
        let bound = Mutex<SocketAddress?>(nil)
        let listening = DispatchSemaphore(value: 0)
        server = Task {
            try await pool.serve(host: "127.0.0.1", port: 0, onListening: { address in
                bound.withLock { $0 = address }
                listening.signal()
            }) { connection in
                for try await slice in connection.inbound {
                    shared.count.add()
                    if shared.copyControl {
                        try connection.connection.writeCopying(slice.bytes)
                    } else {
                        try await connection.write(slice)
                    }
                }
            }
        }
        guard listening.wait(timeout: .now() + .seconds(30)) == .success, let address = bound.withLock({ $0 }) else {
            throw .setup("the async server did not start listening")
        }
        return address
    }

    var writes: Int { shared.count.count }
    var failure: String? {
        shared.failures.withLock { f in f.first.map { "\($0) (\(f.count) connections failed)" } }
    }

    var parameters: [(String, Int)] {
        [
            ("connections", connections), ("message_bytes", shared.payload.count),
            ("warmup_ms", Int(warmup * 1000)), ("duration_ms", Int(duration * 1000)),
            ("async_server", asyncServer ? 1 : 0),
        ]
    }
}
