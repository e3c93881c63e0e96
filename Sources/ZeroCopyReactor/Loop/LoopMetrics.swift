// Exports a loop's counters to swift-metrics from a timer on the loop, as deltas, so the read and write paths
// never touch a metrics object. Dimensions: the loop's index. Loop only.
import Metrics

final class LoopMetrics {
    /// Each counter and the figure it reports.
    private static let counted: [(label: String, value: @Sendable (LoopCounters) -> Int)] = [
        ("zcr_bytes_written", { $0.write.bytesWritten }),
        ("zcr_bytes_read", { $0.bytesRead }),
        ("zcr_send_calls", { $0.write.sendCalls }),
        ("zcr_sendmsg_calls", { $0.write.sendmsgCalls }),
        ("zcr_slices_written", { $0.write.slicesWritten }),
        ("zcr_partial_writes", { $0.write.partialWrites }),
        ("zcr_eagain", { $0.write.wouldBlocks }),
        ("zcr_wakeups", { $0.wakeups }),
        ("zcr_connections_accepted", { $0.connectionsAccepted }),
        ("zcr_bytes_copied", { $0.bytesCopied }),
    ]
    private let counters: [Counter]
    private let connectionsOpen: Gauge
    private let slicesPerCall: Recorder
    private var last = LoopCounters()

    init(loop: Int) {
        let dimensions = [("loop", String(loop))]
        counters = Self.counted.map { Counter(label: $0.label, dimensions: dimensions) }
        connectionsOpen = Gauge(label: "zcr_connections_open", dimensions: dimensions)
        slicesPerCall = Recorder(label: "zcr_slices_per_call", dimensions: dimensions)
    }

    func report(_ now: LoopCounters) {
        for (counter, entry) in zip(counters, Self.counted) {
            counter.increment(by: Int64(max(0, entry.value(now) - entry.value(last))))
        }
        connectionsOpen.record(now.connectionsOpen)
        let calls = now.write.syscalls - last.write.syscalls
        if calls > 0 { slicesPerCall.record(Double(now.write.slicesWritten - last.write.slicesWritten) / Double(calls)) }
        last = now
    }
}
