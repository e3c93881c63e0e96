// seed-large and seed-gather: one payload, touched before measuring, sent by the server's loop with ONE write (one
// slice, or N slices in one message) to a client that discards it; the copy control copies it there with
// writeCopying, so the copy is charged to a reactor thread. It never touches the payload in the window but to send it.
import Synchronization
import ZeroCopyReactor

final class SeedScenario: ScenarioDriver, @unchecked Sendable {
    private let payload: Payload
    private let pieces: Int
    private let copyControl: Bool
    private let warmBytes: Int
    private let count = WriteCount()
    /// Set once by `prepare`, before any traffic; read by the runner's thread and by tasks on the server's loop.
    private var pair: LoopbackPair<QuietServer>?

    init(options: ProfileOptions, pieces: Int) {
        payload = Payload(byteCount: options.payloadBytes)
        self.pieces = max(1, min(pieces, options.payloadBytes))
        copyControl = options.copyControl
        // Warm up the same path with a part of the payload: connection buffers, chain nodes, the loops' scratch.
        warmBytes = min(options.payloadBytes, 8 << 20)
    }

    func prepare(pool: ReactorPool) throws(ProfileError) {
        pair = try LoopbackPair.open(pool: pool) { QuietServer() }
    }

    func startWarmUp() -> PhaseEnd { send(0..<warmBytes, receivedTotal: warmBytes) }

    func startWindow() -> PhaseEnd { send(0..<payload.count, receivedTotal: warmBytes + payload.count) }

    func stop() {}

    var writes: Int { count.count }
    var failure: String? { nil }

    var parameters: [(String, Int)] {
        [("payload_bytes", payload.count), ("slices_per_write", pieces), ("warmup_bytes", warmBytes)]
    }

    /// Queues `range` in one write on the server's loop; completes when the client has `receivedTotal` bytes.
    private func send(_ range: Range<Int>, receivedTotal: Int) -> PhaseEnd {
        let done = Completion()
        guard let pair else { preconditionFailure("send before prepare") }
        _ = pair.client.loop.submitAndWait { pair.receiver.expect(total: receivedTotal, completion: done) }
        let server = pair.server
        let started = server.loop.execute { [self] in
            do throws(ReactorError) {
                try write(range, to: server)
            } catch {
                done.fail("the server's write failed: \(error)")
            }
        }
        if !started { done.fail("the server's loop has stopped") }
        return .completion(done)
    }

    /// On the server's loop: ONE write of `range` (one slice, or `pieces` slices in one message); the copy control
    /// copies each piece into a new buffer with writeCopying.
    private func write(_ range: Range<Int>, to server: Connection) throws(ReactorError) {
        let step = (range.count + pieces - 1) / pieces
        if copyControl {
            for start in stride(from: range.lowerBound, to: range.upperBound, by: step) {
                count.add()
                try server.writeCopying(payload.raw(start..<min(start + step, range.upperBound)))
            }
        } else if pieces == 1 {
            count.add()
            try server.write(payload.slice(range))
        } else {
            var message = OutboundMessage()
            for start in stride(from: range.lowerBound, to: range.upperBound, by: step) {
                message.append(payload.slice(start..<min(start + step, range.upperBound)))
            }
            count.add()
            try server.write(&message)
        }
    }
}
