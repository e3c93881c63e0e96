// One generator connection: sends messages cut from the shared payload, counts responses by size, checks bytes,
// and records each round trip. Runs on its loop's thread only; never allocates per message (one ring of send
// times per connection, sized by the pipeline) and never copies a payload.
import ZeroCopyReactor

final class LoadClient: ConnectionHandler {
    unowned let worker: LoopWorker
    let connection: Connection
    private let plan: TrafficPlan
    /// Actual send time of each message in flight, at index `k % window` (latency modes only).
    private let sendTimes: UnsafeMutablePointer<UInt64>?

    // Loop only.
    /// Slot in the loop's open-loop schedule.
    var position = 0
    /// Messages whose intended send time has passed (open loop).
    var due = 0
    private(set) var sent = 0
    private(set) var received = 0
    private(set) var isOpen = false
    private var responseFill = 0
    private var streamOffset = 0
    private var lastBadUnit = -1
    /// The peer closed first (counted once, in `connectionDidReachEnd`).
    private(set) var endedByPeer = false
    /// `progress` when the window opened: unchanged at the end means the connection was stalled all window.
    var progressMark = 0

    /// Grows with every byte received and every message sent.
    var progress: Int { streamOffset &+ sent }

    init(worker: LoopWorker, connection: Connection) {
        self.worker = worker
        self.connection = connection
        plan = worker.plan
        if plan.tracksLatency {
            sendTimes = .allocate(capacity: plan.window)
        } else {
            sendTimes = nil
        }
    }

    deinit { sendTimes?.deallocate() }

    // MARK: sending

    /// Sends what the pipeline, the schedule and the connection's watermark allow.
    func pump(now: UInt64) {
        guard isOpen, worker.sending, plan.sends else { return }
        let limit = plan.rate == nil ? Int.max : due
        let window = plan.window
        while sent < limit && (window == 0 || sent - received < window) && connection.isWritable {
            do {
                try connection.write(plan.payload.message(sent))
            } catch {
                return  // closing: connectionClosed will say why
            }
            if let sendTimes { sendTimes[sent % window] = now }
            sent += 1
            worker.counters.messagesSent += 1
            worker.counters.bytesSent += plan.messageBytes
        }
    }

    // MARK: ConnectionHandler

    func connectionOpened(_ connection: Connection) {
        isOpen = true
        worker.opened(self)
    }

    func connection(_ connection: Connection, didRead bytes: InboundBytes) {
        let n = bytes.count
        worker.counters.bytesReceived += n
        if plan.verify { check(bytes.bytes) }
        streamOffset += n
        let unit = plan.responseBytes
        guard unit > 0 else { return }
        var fill = responseFill + n
        guard fill >= unit else {
            responseFill = fill
            return
        }
        let now = EventLoop.now()
        while fill >= unit {
            fill -= unit
            if let sendTimes {
                guard received < sent else {
                    worker.count(error: "unexpected_bytes")
                    fill = 0
                    break
                }
                let actual = sendTimes[received % plan.window]
                let intended = plan.rate == nil ? actual : worker.intendedTime(position: position, message: received)
                worker.recordLatency(intended: intended, actual: actual, now: now)
            }
            received += 1
            worker.counters.messagesReceived += 1
        }
        responseFill = fill
        if plan.tracksLatency { pump(now: now) }
    }

    func connection(_ connection: Connection, writabilityChanged isWritable: Bool) {
        if isWritable { pump(now: EventLoop.now()) }
    }

    func connectionDidReachEnd(_ connection: Connection) {
        endedByPeer = true
        worker.peerEnded(self)
        connection.close()
    }

    func connectionClosed(_ connection: Connection, error: ReactorError?) {
        let wasOpen = isOpen
        isOpen = false
        worker.closed(self, error: error, wasEstablished: wasOpen)
    }

    // MARK: verification

    private func check(_ bytes: UnsafeRawBufferPointer) {
        worker.counters.verifiedBytes += bytes.count
        guard let first = plan.payload.firstMismatch(bytes, streamOffset: streamOffset) else { return }
        // Slow path, only when something is wrong: count each damaged unit once.
        for i in first..<bytes.count {
            let offset = streamOffset + i
            let expected = plan.payload.expected(at: offset)
            guard bytes[i] != expected else { continue }
            let unit = offset / plan.messageBytes
            if unit != lastBadUnit {
                lastBadUnit = unit
                worker.verifyFailed(connection: connection.id, streamOffset: offset, expected: expected, got: bytes[i])
            }
        }
    }
}
