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
    /// On the open-loop schedule (a connection established after traffic started is not, and is sent nothing).
    var isPaced = false
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
    /// The connection was owed traffic when the window opened (see `owesTraffic`).
    var owedAtMark = false

    /// True when the server owes this connection something: an answer to a request in flight, the rest of a blast
    /// stream, or room for a send that is due (closed loop: always). A connection owed nothing (open loop at a low
    /// rate, between its sends) is idle, not stalled.
    func owesTraffic(now: UInt64) -> Bool {
        switch plan.mode {
        case .blast: return plan.expectBytes.map { streamOffset < $0 } ?? true
        case .echo, .request, .sink:
            guard plan.rate != nil else { return true }
            if plan.tracksLatency && sent > received { return true }
            guard isPaced else { return false }
            return max(due, worker.dueMessages(position: position, now: now)) > sent
        }
    }

    /// Bytes received on this connection (the whole run).
    var bytesReceived: Int { streamOffset }

    /// Grows with every byte received and every message sent.
    var progress: Int { streamOffset &+ sent }

    /// Where this connection's stream starts in the payload's pattern (distinct per connection in echo/request).
    private let shift: Int

    init(worker: LoopWorker, connection: Connection, number: Int) {
        self.worker = worker
        self.connection = connection
        plan = worker.plan
        shift = plan.payload.shift(connection: number)
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
                try connection.write(plan.payload.message(sent, shift: shift))
            } catch {
                return  // closing: connectionClosed will say why
            }
            if let sendTimes { sendTimes[sent % window] = now }
            sent += 1
            worker.counters.messagesSent += 1
            worker.counters.bytesSent += plan.messageBytes
        }
    }

    /// At window end: records every request sent and not answered with its wait so far, and in open loop every
    /// send that was due and not made, from its intended time.
    func recordTail(now: UInt64) -> TailCounts {
        guard isOpen, let sendTimes else { return TailCounts() }
        var tail = TailCounts()
        let open = plan.rate != nil
        for k in received..<sent {
            let actual = sendTimes[k % plan.window]
            let intended = open ? worker.intendedTime(position: position, message: k) : actual
            worker.recordLatency(intended: intended, actual: actual, now: now)
            tail.oldestMicros = max(tail.oldestMicros, (now &- min(intended, now)) / 1000)
        }
        tail.unanswered = sent - received
        if open && isPaced {
            let due = max(self.due, worker.dueMessages(position: position, now: now))
            if due > sent {
                tail.unsent = due - sent
                // The oldest unsent is the first one.
                let first = worker.intendedTime(position: position, message: sent)
                tail.oldestMicros = max(tail.oldestMicros, (now &- min(first, now)) / 1000)
                // One sample per send; past a million, evenly spaced samples carry the counts between them.
                let n = due - sent
                let step = max(1, n / 1_000_000)
                for j in stride(from: 0, to: n, by: step) {
                    let intended = worker.intendedTime(position: position, message: sent + j)
                    worker.recordUnsent(intended: intended, now: now, count: min(step, n - j))
                }
            }
        }
        return tail
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
        if let owed = plan.expectBytes, streamOffset <= owed, streamOffset + n > owed {
            worker.streamRanLong(self, owed: owed)
        }
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
        guard let first = plan.payload.firstMismatch(bytes, streamOffset: streamOffset &+ shift) else { return }
        // Slow path, only when something is wrong: count each damaged unit once.
        for i in first..<bytes.count {
            let offset = streamOffset + i
            let expected = plan.payload.expected(at: offset &+ shift)
            guard bytes[i] != expected else { continue }
            let unit = offset / plan.messageBytes
            if unit != lastBadUnit {
                lastBadUnit = unit
                worker.verifyFailed(connection: connection.id, streamOffset: offset, expected: expected, got: bytes[i])
            }
        }
    }
}
