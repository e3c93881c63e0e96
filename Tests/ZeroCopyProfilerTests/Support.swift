// Test support: running the built `zcr` on a thread of its own (so a blocking child never holds one of Swift
// concurrency's two threads), reading its JSON, crafted figures and reports. Nothing here measures anything.
@_exported import TestSupport
import Foundation
import Glibc
import Synchronization
import Testing
import ZeroCopyReactor

@testable import ZeroCopyProfiler

extension Zcr {
    /// Runs `zcr profile` with `arguments` plus `--json` into a temporary file and returns the run and the JSON.
    static func profile(_ arguments: [String]) async throws -> (ZcrRun, JSONObject) {
        let file = temporaryPath("profile.json")
        defer { unlink(file) }
        let run = try await run(["profile", "--quiet", "--json", file] + arguments)
        let data = try #require(FileManager.default.contents(atPath: file), "no JSON written; stderr: \(run.stderr)")
        return (run, try JSONObject(data))
    }

    /// Skips the calling test when this `zcr` does not run on jemalloc (built with ZCR_JEMALLOC=0, as the
    /// ThreadSanitizer job does: TSan and jemalloc both replace malloc). Takes a report or a self-test result.
    static func requireJemalloc(_ json: JSONObject) throws {
        let onJemalloc = json["allocator"]["jemalloc"].bool ?? json["jemalloc"].bool
        #expect(onJemalloc != nil, "the JSON does not say which allocator ran")
        if onJemalloc != true {
            let name = json["allocator"]["name"].string ?? json["allocator"].string ?? "?"
            let why =
                "skipped: this zcr does not run on jemalloc (\(name)), "
                + "e.g. a ZCR_JEMALLOC=0 build for ThreadSanitizer; allocation figures cannot be checked"
            try Test.cancel(Comment(rawValue: why))
        }
    }
}

/// In a debug build the core allocates a little on every loop iteration (generic code left unspecialized), so the
/// end-to-end limits allow for it there; release builds are held to the limits.
enum Build {
    #if DEBUG
        static let isDebug = true
        static let allocatedPerByteLimit = 0.01
    #else
        static let isDebug = false
        static let allocatedPerByteLimit = 0.001
    #endif
}

/// Read-only access to parsed JSON: `json["a"]["b"].int`.
struct JSONObject: @unchecked Sendable {
    let value: Any?

    init(_ data: Data) throws { value = try JSONSerialization.jsonObject(with: data) }
    init(value: Any?) { self.value = value }

    subscript(key: String) -> JSONObject { JSONObject(value: (value as? [String: Any])?[key]) }
    subscript(index: Int) -> JSONObject {
        guard let a = value as? [Any], index < a.count else { return JSONObject(value: nil) }
        return JSONObject(value: a[index])
    }
    var isNull: Bool { value is NSNull }
    var exists: Bool { value != nil }
    var int: Int? { (value as? NSNumber).map { $0.intValue } }
    var double: Double? { (value as? NSNumber).map { $0.doubleValue } }
    var bool: Bool? { (value as? NSNumber).map { $0.boolValue } }
    var string: String? { value as? String }
    var array: [JSONObject] { (value as? [Any])?.map { JSONObject(value: $0) } ?? [] }
    var keys: Set<String> { Set((value as? [String: Any])?.keys.map { $0 } ?? []) }
}

func temporaryPath(_ name: String) -> String {
    var template = Array("/tmp/zcr-profile-test-XXXXXX".utf8CString)
    let fd = mkstemp(&template)
    if fd >= 0 { close(fd) }
    let base = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    unlink(base)
    return base + "-" + name
}



/// Crafted figures: one loop reading with the given cumulative values.
func reading(
    loop: Int, allocated: UInt64?, requests: UInt64?, bytesWritten: Int, copied: Int = 0,
    verified: Int = 0, foreign: Int = 0, sendmsg: Int = 0, send: Int = 0, slices: Int = 0, memcpy: UInt64? = 0
) -> LoopReading {
    var c = LoopCounters()
    c.loop = loop
    c.write.bytesWritten = bytesWritten
    c.write.verifiedIovecs = verified
    c.write.foreignIovecs = foreign
    c.write.sendmsgCalls = sendmsg
    c.write.sendCalls = send
    c.write.slicesWritten = slices
    c.bytesCopied = copied
    var r = LoopReading(
        loop: loop, threadID: Int32(100 + loop), arena: allocated == nil ? nil : UInt32(9 + loop),
        allocatedBytes: allocated, deallocatedBytes: allocated, requests: requests, counters: c)
    r.memcpy = memcpy.map { MemcpySlot.Counts(memcpyBytes: $0, memcpyCalls: $0 / 4096, memmoveBytes: 0, memmoveCalls: 0) }
    return r
}

/// A crafted report around `window`.
func craftedReport(
    _ window: WindowFigures, scenario: ScenarioName = .seedLarge, copyControl: Bool = false,
    allocator: AllocatorInfo? = nil, notes: [String] = []
) -> ProfileReport {
    let verdict = Verdict.evaluate(VerdictInput(window))
    let a =
        allocator
        ?? AllocatorInfo(
            name: "jemalloc", isJemalloc: true, statisticsAvailable: true, library: "/usr/lib/libjemalloc.so.2",
            preloaded: false, mallocConf: nil, note: "crafted")
    let sample = TimelineSample(
        event: "tick", seconds: 1, phase: .window, bytesSent: window.bytesSent,
        throughputBytesPerSecond: 1e9, reactorBytesAllocated: window.reactorBytesAllocated,
        heap: HeapStats(
            allocated: 1 << 20, active: 2 << 20, resident: 3 << 20, mapped: 4 << 20,
            metadata: 1 << 16),
        rss: 50 << 20, rssPeak: 51 << 20, bytesCopied: window.bytesCopied, memcpyBytes: window.reactorMemcpyBytes)
    return ProfileReport(
        scenario: scenario, copyControl: copyControl, threads: window.threads.count,
        parameters: [("payload_bytes", window.bytesSent)], allocator: a, dedicatedArenas: a.isJemalloc, window: window,
        windowStartSeconds: 0.5, windowEndSeconds: 1.5, peakRSSMethod: "clear_refs", verdict: verdict,
        thresholds: .standard,
        targets: ProfileReport.targets(for: scenario, copyControl: copyControl, window: window, verdict: verdict),
        timeline: [sample], notes: notes)
}
