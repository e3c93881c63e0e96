// The verdict and the scenario targets against crafted figures: every condition of "zero copy" can flip it alone,
// and a figure that is unavailable never counts as a pass.
import Testing

@testable import ZeroCopyProfiler

@Suite struct VerdictTests {
    static let clean = VerdictInput(
        bytesSent: 1000 << 20, allocatedBytesPerByteSent: 0, bytesCopied: 0,
        verifiedIovecs: 41, foreignIovecs: 0, memcpyBytesPerByteSent: 0)

    @Test func zeroCopyWhenEveryCheckPasses() {
        let v = Verdict.evaluate(Self.clean)
        #expect(v.zeroCopy)
        #expect(v.checks.map(\.name) == [
                "allocated_bytes_per_byte_sent", "bytes_copied", "foreign_iovecs", "memcpy_bytes_per_byte_sent",
            ])
        #expect(v.checks.allSatisfy { $0.passed })
    }

    @Test func theAllocationLimitIsInclusive() {
        var input = Self.clean
        input.allocatedBytesPerByteSent = 0.001
        #expect(Verdict.evaluate(input).zeroCopy)
        input.allocatedBytesPerByteSent = 0.001_000_1
        let v = Verdict.evaluate(input)
        #expect(!v.zeroCopy)
        #expect(v.checks.filter { !$0.passed }.map(\.name) == ["allocated_bytes_per_byte_sent"])
    }

    /// Each failing condition alone makes the verdict false, and only its own check fails.
    @Test(arguments: [
        (
            "allocated_bytes_per_byte_sent",
            VerdictInput(
                bytesSent: 1 << 20, allocatedBytesPerByteSent: 1.0, bytesCopied: 0,
                verifiedIovecs: 5, foreignIovecs: 0, memcpyBytesPerByteSent: 0)
        ),
        (
            "bytes_copied",
            VerdictInput(
                bytesSent: 1 << 20, allocatedBytesPerByteSent: 0, bytesCopied: 1,
                verifiedIovecs: 5, foreignIovecs: 0, memcpyBytesPerByteSent: 0)
        ),
        (
            "foreign_iovecs",
            VerdictInput(
                bytesSent: 1 << 20, allocatedBytesPerByteSent: 0, bytesCopied: 0,
                verifiedIovecs: 5, foreignIovecs: 1, memcpyBytesPerByteSent: 0)
        ),
        (
            "memcpy_bytes_per_byte_sent",
            VerdictInput(
                bytesSent: 1 << 20, allocatedBytesPerByteSent: 0, bytesCopied: 0,
                verifiedIovecs: 5, foreignIovecs: 0, memcpyBytesPerByteSent: 1.0)
        ),
    ])
    func oneFailingConditionIsEnough(failing: String, input: VerdictInput) {
        let v = Verdict.evaluate(input)
        #expect(!v.zeroCopy)
        #expect(v.checks.filter { !$0.passed }.map(\.name) == [failing])
    }

    @Test func aCopyIntoAnExistingBufferIsCaughtWithoutAnyAllocation() {
        // The case allocation counting alone misses: nothing allocated, but the bytes on the wire were not the
        // caller's (the iovec check) and the library said it copied.
        let v = Verdict.evaluate(
            VerdictInput(
                bytesSent: 1 << 20, allocatedBytesPerByteSent: 0, bytesCopied: 1 << 20,
                verifiedIovecs: 0, foreignIovecs: 16, memcpyBytesPerByteSent: 0))
        #expect(!v.zeroCopy)
        #expect(v.checks.filter { !$0.passed }.map(\.name) == ["bytes_copied", "foreign_iovecs"])
    }

    @Test func aCopyIntoReusedMemoryTheLibraryDoesNotCountIsCaughtByTheIovecAndMemcpyChecks() {
        // The reuse control seen from outside: nothing allocated, so the allocation check passes; the bytes handed
        // to the kernel were a staging buffer's (foreign) and memcpy moved as many bytes as were sent.
        let v = Verdict.evaluate(
            VerdictInput(
                bytesSent: 1 << 20, allocatedBytesPerByteSent: 0.0001, bytesCopied: 0, verifiedIovecs: 0,
                foreignIovecs: 256, memcpyBytesPerByteSent: 1.0))
        #expect(!v.zeroCopy)
        #expect(v.failedChecks == ["foreign_iovecs", "memcpy_bytes_per_byte_sent"])
        #expect(v.reason == "caught by foreign_iovecs, memcpy_bytes_per_byte_sent")
    }

    @Test func bytesSentWithSendfileNeedNoIovecCheck() {
        var input = Self.clean
        input.verifiedIovecs = 0
        #expect(!Verdict.evaluate(input).zeroCopy, "nothing checked and nothing sent with sendfile proves nothing")
        input.sendfileBytes = 1 << 20
        let v = Verdict.evaluate(input)
        #expect(v.zeroCopy)
        #expect(v.checks[2].value == 0)
        #expect(v.checks[2].detail.contains("sendfile"))
        input.foreignIovecs = 1
        #expect(Verdict.evaluate(input).failedChecks == ["foreign_iovecs"])
    }

    @Test func withoutTheMemcpyCounterTheVerdictIsNeverYes() {
        var input = Self.clean
        input.memcpyBytesPerByteSent = nil
        let v = Verdict.evaluate(input)
        #expect(!v.zeroCopy)
        #expect(v.failedChecks == ["memcpy_bytes_per_byte_sent"])
        #expect(v.reason == "unavailable: memcpy_bytes_per_byte_sent")
        #expect(v.checks[3].value == nil)
        #expect(v.checks[3].detail.contains("unavailable"))
    }

    @Test func withoutAllocatorFiguresTheVerdictIsNeverYes() {
        var input = Self.clean
        input.allocatedBytesPerByteSent = nil
        let v = Verdict.evaluate(input)
        #expect(!v.zeroCopy)
        let check = v.checks[0]
        #expect(check.value == nil)
        #expect(!check.passed)
        #expect(check.detail.contains("unavailable"))
    }

    @Test func nothingSentProvesNothing() {
        let v = Verdict.evaluate(
            VerdictInput(
                bytesSent: 0, allocatedBytesPerByteSent: 0, bytesCopied: 0,
                verifiedIovecs: 0, foreignIovecs: 0, memcpyBytesPerByteSent: 0))
        #expect(!v.zeroCopy)
        #expect(v.checks[0].value == nil)
        #expect(v.checks[2].value == nil)
    }

    @Test func noCheckedIovecMeansNoProofOfOwnership() {
        var input = Self.clean
        input.verifiedIovecs = 0
        let v = Verdict.evaluate(input)
        #expect(!v.zeroCopy)
        #expect(v.checks.filter { !$0.passed }.map(\.name) == ["foreign_iovecs"])
    }

    @Test func thresholdsCanBeChanged() {
        var input = Self.clean
        input.allocatedBytesPerByteSent = 0.005
        #expect(!Verdict.evaluate(input).zeroCopy)
        #expect(Verdict.evaluate(input, thresholds: Thresholds(maxAllocatedBytesPerByteSent: 0.01)).zeroCopy)
        input.bytesCopied = 10
        #expect(
            Verdict.evaluate(input, thresholds: Thresholds(maxAllocatedBytesPerByteSent: 0.01, maxBytesCopied: 10))
                .zeroCopy)
    }

    // MARK: targets

    static func window(
        allocated: UInt64, requests: UInt64, sent: Int, writes: Int, rssGrowth: Int,
        copied: Int = 0, foreign: Int = 0
    ) -> WindowFigures {
        let start = MeterSnapshot(nanos: 0, loops: [reading(loop: 0, allocated: 1000, requests: 10, bytesWritten: 0)])
        let end = MeterSnapshot(
            nanos: 1_000_000_000,
            loops: [
                reading(
                    loop: 0, allocated: 1000 + allocated, requests: 10 + requests, bytesWritten: sent, copied: copied,
                    verified: foreign == 0 ? 10 : 0, foreign: foreign)
            ])
        var w = WindowFigures(
            start: start, end: end, durationNanos: 1_000_000_000, writes: writes, peakRSS: 100 + rssGrowth)
        w.rssAtStart = 100
        return w
    }

    @Test func seedLargeTargetsIncludePeakRSS() {
        let ok = Self.window(allocated: 0, requests: 0, sent: 1000 << 20, writes: 1, rssGrowth: 1 << 20)
        let okTargets = ProfileReport.targets(
            for: .seedLarge, copyControl: false, window: ok,
            verdict: Verdict.evaluate(VerdictInput(ok)))
        #expect(okTargets.map(\.name) == ["allocated_bytes_per_byte_sent", "zero_copy", "peak_rss_growth_bytes"])
        #expect(okTargets.allSatisfy { $0.passed })
        let grew = Self.window(allocated: 0, requests: 0, sent: 1000 << 20, writes: 1, rssGrowth: (1 << 20) + 1)
        let grewTargets = ProfileReport.targets(
            for: .seedLarge, copyControl: false, window: grew,
            verdict: Verdict.evaluate(VerdictInput(grew)))
        #expect(grewTargets.filter { !$0.passed }.map(\.name) == ["peak_rss_growth_bytes"])
    }

    @Test func smallManyTargetsAllowNoAllocationPerWrite() {
        let one = Self.window(allocated: 48, requests: 1, sent: 1 << 30, writes: 1 << 24, rssGrowth: 0)
        let targets = ProfileReport.targets(
            for: .smallMany, copyControl: false, window: one,
            verdict: Verdict.evaluate(VerdictInput(one)))
        // 48 bytes per GiB passes the verdict, but one allocation in 16 Mi writes misses the target.
        #expect(Verdict.evaluate(VerdictInput(one)).zeroCopy)
        #expect(targets.filter { !$0.passed }.map(\.name) == ["allocations_per_write"])
    }

    @Test func copyControlTargetsWantTheCopyCaught() {
        let copied = Self.window(
            allocated: 1000 << 20, requests: 1, sent: 1000 << 20, writes: 1, rssGrowth: 1000 << 20,
            copied: 1000 << 20, foreign: 41)
        let verdict = Verdict.evaluate(VerdictInput(copied))
        #expect(!verdict.zeroCopy)
        let targets = ProfileReport.targets(for: .seedLarge, copyControl: true, window: copied, verdict: verdict)
        #expect(targets.map(\.name) == ["allocated_bytes_per_byte_sent", "zero_copy"])
        #expect(targets.allSatisfy { $0.passed })
        // A copy control that the report failed to catch misses both targets.
        let missed = Self.window(allocated: 0, requests: 0, sent: 1000 << 20, writes: 1, rssGrowth: 0)
        let missedTargets = ProfileReport.targets(
            for: .seedLarge, copyControl: true, window: missed,
            verdict: Verdict.evaluate(VerdictInput(missed)))
        #expect(missedTargets.allSatisfy { !$0.passed })
    }
}
