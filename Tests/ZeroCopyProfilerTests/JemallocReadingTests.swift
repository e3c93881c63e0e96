// The profiler's reading of jemalloc against known work. Test bundles do not link jemalloc, so the known work runs
// in the built zcr (which does) through its hidden `profile --self-test`; in this process only the "no jemalloc"
// behaviour can be checked (or, when the tests run with jemalloc preloaded, the same known work in-process).
import Foundation
import Testing
import ZeroCopyReactor

@testable import ZeroCopyProfiler

@Suite(.serialized) struct JemallocReadingTests {
    /// Requests and the usable sizes jemalloc gives them (5.3: 4 size classes per doubling above 64 KiB).
    @Test(arguments: [(1000, 4096, 4096), (100, 100, 112), (16, 1 << 20, 1 << 20), (2, 64 << 20, 64 << 20)])
    func knownWorkOnItsOwnThreadIsExact(count: Int, bytes: Int, usable: Int) async throws {
        let run = try await Zcr.run([
            "profile", "--self-test", "--self-test-count", "\(count)", "--self-test-bytes", "\(bytes)",
        ])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try JSONObject(Data(run.stdout.utf8))
        try Zcr.requireJemalloc(json)
        #expect(json["usable_bytes"].int == usable)
        let total = count * usable
        #expect(json["thread"]["allocated_bytes"].int == total)
        #expect(json["thread"]["allocations"].int == count)
        #expect(json["thread"]["deallocated_bytes"].int == 0)
        #expect(json["thread_frees"]["deallocated_bytes"].int == total)
        #expect(json["thread_frees"]["allocated_bytes"].int == 0)
        #expect(json["thread_frees"]["allocations"].int == 0)
    }

    /// The same known work on a reactor loop, read through ReactorMeter's flushed snapshots. Exact in a release
    /// build; a debug build of the core allocates a little per loop iteration (see Build).
    @Test func knownWorkOnAReactorLoop() async throws {
        let run = try await Zcr.run(["profile", "--self-test", "--self-test-count", "500", "--self-test-bytes", "4096"])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try JSONObject(Data(run.stdout.utf8))
        try Zcr.requireJemalloc(json)
        let (slackBytes, slackCount) = Build.isDebug ? (4096, 64) : (0, 0)
        let idleBytes = try #require(json["loop_idle"]["allocated_bytes"].int)
        let idleCount = try #require(json["loop_idle"]["allocations"].int)
        #expect(idleBytes <= slackBytes && idleCount <= slackCount, "measuring itself allocated on the loop")
        let bytes = try #require(json["loop"]["allocated_bytes"].int)
        let count = try #require(json["loop"]["allocations"].int)
        #expect(bytes >= 500 * 4096 && bytes <= 500 * 4096 + slackBytes)
        #expect(count >= 500 && count <= 500 + slackCount)
        let freed = try #require(json["loop_frees"]["deallocated_bytes"].int)
        #expect(freed >= 500 * 4096)
    }

    // A test bundle is not linked with jemalloc: this is the "not jemalloc" case, checked in-process.
    @Test(.enabled(if: Mallctl.find() == nil, "jemalloc is preloaded into this test process"))
    func withoutJemallocTheReportSaysSoAndGivesNoAllocationFigure() throws {
        let info = AllocatorInfo.detect()
        #expect(!info.isJemalloc)
        #expect(info.note.contains("mallctl was not found"))
        var options = ProfileOptions(scenario: .seedLarge)
        options.payloadBytes = 4 << 20
        let report = try ProfileRunner.run(options)
        let w = report.window
        #expect(w.bytesSent == 4 << 20)
        #expect(w.reactorBytesAllocated == nil)
        #expect(w.reactorAllocations == nil)
        #expect(w.allocatedBytesPerByteSent == nil)
        #expect(w.bytesCopied == 0)
        #expect(w.foreignIovecs == 0)
        #expect(w.verifiedIovecs > 0)
        #expect(!report.zeroCopy, "no allocator figure: the verdict cannot be yes")
        #expect(report.summary.contains("mallctl was not found"))
        #expect(report.json().contains("\"reactor_bytes_allocated\": null"))
    }

    // Without jemalloc the library's own counters still catch the copy control.
    @Test(.enabled(if: Mallctl.find() == nil, "jemalloc is preloaded into this test process"))
    func withoutJemallocTheCopyIsStillCaught() throws {
        var options = ProfileOptions(scenario: .seedGather)
        options.payloadBytes = 4 << 20
        options.copyControl = true
        let report = try ProfileRunner.run(options)
        #expect(report.window.bytesCopied == 4 << 20)
        #expect(report.window.writes == 8)
        #expect(report.window.foreignIovecs > 0)
        #expect(report.window.verifiedIovecs == 0)
        #expect(!report.zeroCopy)
    }

    // Runs only when the tests themselves run on jemalloc, e.g.
    // LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 swift test --filter ZeroCopyProfilerTests
    @Test(.enabled(if: Mallctl.find() != nil, "needs jemalloc in this process (LD_PRELOAD); zcr --self-test covers it"))
    func knownWorkInProcess() throws {
        let result = try KnownWork.run(count: 100, byteCount: 4096)
        #expect(result.thread == KnownWorkFigures(allocatedBytes: 409_600, allocations: 100, deallocatedBytes: 0))
    }
}
