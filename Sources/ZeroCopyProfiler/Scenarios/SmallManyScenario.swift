// small-many: 64-byte slices of ONE shared buffer, one write call per message, 1024 writes at a time on the server's
// loop, which flushes after each batch; the next batch is written from the writability callback, not a new loop task,
// so in steady state writing allocates nothing. It never copies unless it is the copy control.
import ZeroCopyReactor

/// The server side: writes `remaining` messages in batches, pausing while the connection is above its watermark.
final class BatchWriter: ConnectionHandler, @unchecked Sendable {
    private let payload: Payload
    private let messageBytes: Int
    private let perBuffer: Int
    private let batch: Int
    private let copyControl: Bool
    private let count: WriteCount
    // Loop only.
    private var connection: Connection?
    private var remaining = 0
    private var next = 0
    /// Messages the next pump writes at once (a burst once, then `batch`).
    private var nextBurst = 0
    private var scheduled = false
    /// For a batch that leaves the connection writable (smaller than the watermark): made once, but each
    /// `execute` of it still costs the loop one small allocation (the core stores tasks as generic closures).
    private var pumpTask: (@Sendable () -> Void)?

    init(payload: Payload, messageBytes: Int, batch: Int, copyControl: Bool, count: WriteCount) {
        self.payload = payload
        self.messageBytes = messageBytes
        perBuffer = payload.count / messageBytes
        self.batch = batch
        self.copyControl = copyControl
        self.count = count
        pumpTask = { [unowned self] in
            scheduled = false
            pump()
        }
    }

    func connectionOpened(_ connection: Connection) { self.connection = connection }

    func connectionClosed(_ connection: Connection, error: ReactorError?) {
        self.connection = nil
        pumpTask = nil
    }

    /// The connection drained below its low watermark: write the next batch now, from this callback; the loop
    /// flushes it on its next iteration.
    func connection(_ connection: Connection, writabilityChanged isWritable: Bool) {
        if isWritable && !scheduled { pump() }
    }

    /// Adds `messages` to send and writes the first `burst` of them at once (loop only).
    func send(_ messages: Int, burst: Int) {
        remaining += messages
        nextBurst = burst
        if !scheduled { pump() }
    }

    private func schedule() {
        guard !scheduled, remaining > 0, let connection, let pumpTask else { return }
        scheduled = true
        connection.loop.execute(pumpTask)
    }

    private func pump() {
        guard let connection else { return }
        var n = min(max(batch, nextBurst), remaining)
        nextBurst = 0
        do throws(ReactorError) {
            while n > 0 {
                let offset = (next % perBuffer) * messageBytes
                count.add()
                if copyControl {
                    try connection.writeCopying(payload.raw(offset..<offset + messageBytes))
                } else {
                    try connection.write(payload.slice(offset..<offset + messageBytes))
                }
                next += 1
                remaining -= 1
                n -= 1
            }
        } catch {
            connection.abort()
            return
        }
        // Above the high watermark (the normal case) the next batch comes from writabilityChanged(true).
        if connection.isWritable { schedule() }
    }
}

final class SmallManyScenario: ScenarioDriver, @unchecked Sendable {
    private let messages: Int
    private let messageBytes: Int
    private let warmMessages: Int
    private let batch: Int
    private let payload: Payload
    private let copyControl: Bool
    private let count = WriteCount()
    private var pair: LoopbackPair<BatchWriter>?

    init(options: ProfileOptions) {
        messages = options.messages
        messageBytes = options.messageBytes
        batch = options.batch
        copyControl = options.copyControl
        // One buffer holds one batch of distinct messages; every message is a slice of it.
        payload = Payload(byteCount: options.messageBytes * options.batch)
        warmMessages = max(options.batch * 8, min(options.messages / 8, 1 << 20))
    }

    func prepare(pool: ReactorPool) throws(ProfileError) {
        let (payload, messageBytes, batch, copyControl, count) = (payload, messageBytes, batch, copyControl, count)
        pair = try LoopbackPair.open(pool: pool) {
            BatchWriter(
                payload: payload, messageBytes: messageBytes, batch: batch, copyControl: copyControl, count: count)
        }
    }

    /// The warm-up starts with two batches at once: a partial write can leave up to half a batch queued when the next
    /// batch is written, and the loop's pool of chain nodes must have grown to that peak before the window opens.
    func startWarmUp() -> PhaseEnd { send(warmMessages, burst: 2 * batch, receivedTotal: warmMessages * messageBytes) }

    func startWindow() -> PhaseEnd {
        send(messages, burst: batch, receivedTotal: (warmMessages + messages) * messageBytes)
    }

    func stop() {}

    var writes: Int { count.count }
    var failure: String? { nil }

    var parameters: [(String, Int)] {
        [
            ("messages", messages), ("message_bytes", messageBytes), ("writes_per_flush", batch),
            ("shared_buffer_bytes", payload.count), ("warmup_messages", warmMessages),
        ]
    }

    private func send(_ n: Int, burst: Int, receivedTotal: Int) -> PhaseEnd {
        let done = Completion()
        guard let pair else { preconditionFailure("send before prepare") }
        _ = pair.client.loop.submitAndWait { pair.receiver.expect(total: receivedTotal, completion: done) }
        let writer = pair.serverHandler
        if !pair.server.loop.execute({ writer.send(n, burst: burst) }) { done.fail("the server's loop has stopped") }
        return .completion(done)
    }
}
