// Exports a loop's counters to swift-metrics from a timer on the loop, as deltas, so the read and write paths
// never touch a metrics object. Dimensions: the loop's index. Loop only.
import Metrics

final class LoopMetrics {
    private let bytesWritten, bytesRead, sendCalls, sendmsgCalls, slicesWritten, partialWrites, wouldBlocks: Counter
    private let wakeups, accepted, bytesCopied: Counter
    private let connectionsOpen: Gauge
    private let slicesPerCall: Recorder
    private var last = LoopCounters()

    init(loop: Int) {
        let d = [("loop", String(loop))]
        bytesWritten = Counter(label: "zcr_bytes_written", dimensions: d)
        bytesRead = Counter(label: "zcr_bytes_read", dimensions: d)
        sendCalls = Counter(label: "zcr_send_calls", dimensions: d)
        sendmsgCalls = Counter(label: "zcr_sendmsg_calls", dimensions: d)
        slicesWritten = Counter(label: "zcr_slices_written", dimensions: d)
        partialWrites = Counter(label: "zcr_partial_writes", dimensions: d)
        wouldBlocks = Counter(label: "zcr_eagain", dimensions: d)
        wakeups = Counter(label: "zcr_wakeups", dimensions: d)
        accepted = Counter(label: "zcr_connections_accepted", dimensions: d)
        bytesCopied = Counter(label: "zcr_bytes_copied", dimensions: d)
        connectionsOpen = Gauge(label: "zcr_connections_open", dimensions: d)
        slicesPerCall = Recorder(label: "zcr_slices_per_call", dimensions: d)
    }

    func report(_ now: LoopCounters) {
        func delta(_ a: Int, _ b: Int) -> Int64 { Int64(max(0, a - b)) }
        bytesWritten.increment(by: delta(now.write.bytesWritten, last.write.bytesWritten))
        bytesRead.increment(by: delta(now.bytesRead, last.bytesRead))
        sendCalls.increment(by: delta(now.write.sendCalls, last.write.sendCalls))
        sendmsgCalls.increment(by: delta(now.write.sendmsgCalls, last.write.sendmsgCalls))
        slicesWritten.increment(by: delta(now.write.slicesWritten, last.write.slicesWritten))
        partialWrites.increment(by: delta(now.write.partialWrites, last.write.partialWrites))
        wouldBlocks.increment(by: delta(now.write.wouldBlocks, last.write.wouldBlocks))
        wakeups.increment(by: delta(now.wakeups, last.wakeups))
        accepted.increment(by: delta(now.connectionsAccepted, last.connectionsAccepted))
        bytesCopied.increment(by: delta(now.bytesCopied, last.bytesCopied))
        connectionsOpen.record(now.connectionsOpen)
        let calls = now.write.syscalls - last.write.syscalls
        if calls > 0 { slicesPerCall.record(Double(now.write.slicesWritten - last.write.slicesWritten) / Double(calls)) }
        last = now
    }
}
