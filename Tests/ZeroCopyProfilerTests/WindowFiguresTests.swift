// The window's arithmetic on crafted snapshots: per-thread deltas, totals that are unknown as soon as one part is,
// the headline ratios, and wrapping counters.
import Testing

@testable import ZeroCopyProfiler

@Suite struct WindowFiguresTests {
    @Test func deltasPerThreadAndTotals() {
        let start = MeterSnapshot(
            nanos: 1_000,
            loops: [
                reading(loop: 0, allocated: 5_000, requests: 50, bytesWritten: 100, verified: 3, sendmsg: 1, slices: 4),
                reading(loop: 1, allocated: 7_000, requests: 70, bytesWritten: 0),
            ])
        let end = MeterSnapshot(
            nanos: 2_000_000_000,
            loops: [
                reading(
                    loop: 0, allocated: 5_064, requests: 51, bytesWritten: 100 + 64_000, verified: 13, sendmsg: 3,
                    send: 2, slices: 1_028),
                reading(loop: 1, allocated: 7_000, requests: 70, bytesWritten: 0),
            ])
        let w = WindowFigures(start: start, end: end, durationNanos: 2_000_000_000, writes: 1_000, peakRSS: nil)
        #expect(w.threads.map(\.allocatedBytes) == [64, 0])
        #expect(w.threads.map(\.allocations) == [1, 0])
        #expect(w.bytesSent == 64_000)
        #expect(w.reactorBytesAllocated == 64)
        #expect(w.reactorAllocations == 1)
        #expect(w.allocatedBytesPerByteSent == 0.001)
        #expect(w.allocationsPerWrite == 0.001)
        #expect(w.verifiedIovecs == 10)
        #expect(w.syscalls == 4)
        #expect(w.sendmsgCalls == 2)
        #expect(w.slicesPerCall == 256)
        #expect(w.throughputBytesPerSecond == 32_000)
    }

    @Test func oneUnknownThreadMakesTheTotalUnknown() {
        let start = MeterSnapshot(
            nanos: 0,
            loops: [
                reading(loop: 0, allocated: 0, requests: 0, bytesWritten: 0),
                reading(loop: 1, allocated: nil, requests: nil, bytesWritten: 0),
            ])
        let end = MeterSnapshot(
            nanos: 1,
            loops: [
                reading(loop: 0, allocated: 0, requests: 0, bytesWritten: 1 << 20),
                reading(loop: 1, allocated: nil, requests: nil, bytesWritten: 1 << 20),
            ])
        let w = WindowFigures(start: start, end: end, durationNanos: 1, writes: 2, peakRSS: nil)
        #expect(w.threads[0].allocatedBytes == 0)
        #expect(w.reactorBytesAllocated == nil)
        #expect(w.reactorAllocations == nil)
        #expect(w.allocatedBytesPerByteSent == nil)
        #expect(w.allocationsPerWrite == nil)
        #expect(!Verdict.evaluate(VerdictInput(w)).zeroCopy)
    }

    @Test func requestsReadWithoutAFlushAreUnknown() {
        // Snapshots taken without flushing the threads' caches leave `requests` nil: their counts would lag.
        let start = MeterSnapshot(nanos: 0, loops: [reading(loop: 0, allocated: 0, requests: nil, bytesWritten: 0)])
        let end = MeterSnapshot(nanos: 1, loops: [reading(loop: 0, allocated: 64, requests: nil, bytesWritten: 64)])
        let w = WindowFigures(start: start, end: end, durationNanos: 1, writes: 1, peakRSS: nil)
        #expect(w.reactorBytesAllocated == 64)
        #expect(w.reactorAllocations == nil)
    }

    @Test func wrappedCountersStillSubtractExactly() {
        let start = MeterSnapshot(
            nanos: 0,
            loops: [
                reading(
                    loop: 0, allocated: UInt64.max - 9, requests: UInt64.max,
                    bytesWritten: 0)
            ])
        let end = MeterSnapshot(nanos: 1, loops: [reading(loop: 0, allocated: 20, requests: 1, bytesWritten: 10)])
        let w = WindowFigures(start: start, end: end, durationNanos: 1, writes: 1, peakRSS: nil)
        #expect(w.reactorBytesAllocated == 30)
        #expect(w.reactorAllocations == 2)
    }

    @Test func peakRSSGrowthNeedsBothEnds() {
        let s = MeterSnapshot(nanos: 0, loops: [reading(loop: 0, allocated: 0, requests: 0, bytesWritten: 0)])
        var w = WindowFigures(start: s, end: s, durationNanos: 0, writes: 0, peakRSS: 10 << 20)
        #expect(w.peakRSSGrowth == nil)  // the snapshot carried no /proc reading
        w.rssAtStart = 9 << 20
        #expect(w.peakRSSGrowth == 1 << 20)
        w.peakRSS = nil
        #expect(w.peakRSSGrowth == nil)
        #expect(w.throughputBytesPerSecond == nil)
    }
}
