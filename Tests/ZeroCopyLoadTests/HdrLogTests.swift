// The HdrHistogram interval log: the V2 encoding round trip, a log written by HdrHistogram's own Java writer
// (read with the values its own tests expect), and merging two logs through the API and through `zcr load merge`.
import Foundation
import Histogram
import Testing

@testable import ZeroCopyLoad

@Suite struct HdrLogTests {
    static func histogram(_ values: some Sequence<UInt64>) -> Histogram<UInt64> {
        var h = Histograms.make()
        for v in values { h.record(v) }
        return h
    }

    @Test func zigZagRoundTripsEveryWidth() {
        for v: Int64 in [0, 1, -1, 63, -64, 64, 8191, -8192, 1 << 20, -(1 << 35), 1 << 55, Int64.max, Int64.min] {
            var bytes: [UInt8] = []
            ZigZag.put(v, into: &bytes)
            var cursor = 0
            #expect(ZigZag.get(bytes, &cursor, end: bytes.count) == v)
            #expect(cursor == bytes.count && bytes.count <= 9)
        }
    }

    @Test func encodingRoundTripsCountsExactly() throws {
        var h = Self.histogram([1, 1, 2, 5, 999, 1000, 2047, 2048, 2049, 123_456, 3_000_000_000])
        h.record(77, count: 1_000_000)
        let decoded = try HdrEncoding.decode(base64: Substring(try HdrEncoding.encode(h)))
        var back = Histograms.make()
        decoded.add(into: &back)
        #expect(back.totalCount == h.totalCount)
        for v in h.recordedValues() {
            #expect(back.countForValue(v.value) == v.count, "value \(v.value)")
        }
        #expect(decoded.highestTrackableValue == h.highestTrackableValue)
    }

    @Test func emptyHistogramEncodes() throws {
        let decoded = try HdrEncoding.decode(base64: Substring(try HdrEncoding.encode(Histograms.make())))
        #expect(decoded.totalCount == 0)
    }

    @Test func readsALogWrittenByHdrHistogramsJavaWriter() throws {
        // HdrHistogram's own expectations for this file (HistogramLogReaderWriterTest.jHiccupV2Log).
        let log = try HdrLogFile(text: JHiccupFixture.text, name: "jHiccup-2.0.7S.logV2.hlog")
        #expect(log.intervals.count == 38)
        #expect(log.startTime == 1441753532.570)
        #expect(log.intervals[0].start == 1441753532.570 + 0.126)
        var total = HdrMerge.empty()
        for i in log.intervals { i.histogram.add(into: &total) }
        #expect(total.totalCount == 30874)
        #expect(total.valueAtPercentile(99.9) == 956_825_599)
        #expect(total.max == 981_991_423)
    }

    @Test func rejectsWhatItCannotRead() {
        #expect(throws: LoadError("x.hlog:1: not an interval line ([Tag=T,]start,length,max,histogram)")) {
            try HdrLogFile(text: "0.1,1.0,HISTFAAA\n", name: "x.hlog")
        }
        #expect(throws: LoadError("x.hlog:2: histogram is not valid base64")) {
            try HdrLogFile(text: "#[StartTime: 1.0 (seconds since epoch)]\n0.1,1.0,2.0,HIST!!\n", name: "x.hlog")
        }
    }

    static func log(start: Double, _ intervals: [(Double, Histogram<UInt64>)], tag: String? = nil) throws -> String {
        var text = HdrLogFormat.header(startTime: start)
        for (offset, h) in intervals { text += try HdrLogFormat.line(tag: tag, start: offset, length: 1, histogram: h) }
        return text
    }

    @Test func mergeOfTwoLogsIsTheDistributionOfAllValues() throws {
        // Two "machines", started 0.4 s apart, each with two one-second intervals.
        let a = try Self.log(start: 1_700_000_000.2, [(0, Self.histogram(1...500)), (1, Self.histogram(501...1000))])
        let b = try Self.log(
            start: 1_700_000_000.6, [(0, Self.histogram(1001...1500)), (1, Self.histogram(1501...4000))])
        let merged = try HdrMerge.merge(logs: [("a", a), ("b", b)])
        let all = Self.histogram(1...4000)
        let s = try #require(merged.summaries[""])
        #expect(merged.files == 2 && merged.intervals == 4 && merged.tags == [""])
        #expect(s.count == 4000)
        #expect(s.p50 == all.valueAtPercentile(50))
        #expect(s.p99 == all.valueAtPercentile(99))
        #expect(s.p9999 == all.valueAtPercentile(99.99))
        #expect(s.max == all.max)
        // Intervals are summed per wall-clock second: both logs' first intervals start in second ...000.
        let back = try HdrLogFile(text: merged.log, name: "merged")
        #expect(back.intervals.count == 2)
        #expect(back.intervals.map(\.histogram.totalCount) == [1000, 3000])
        #expect(back.startTime == 1_700_000_000)
    }

    @Test func mergeKeepsTagsApart() throws {
        let a =
            try Self.log(start: 1_700_000_000, [(0, Self.histogram(1...10))])
            + (try HdrLogFormat.line(tag: "raw", start: 0, length: 1, histogram: Self.histogram(1...3)))
        let merged = try HdrMerge.merge(logs: [("a", a), ("b", a)])
        #expect(merged.tags == ["", "raw"])
        #expect(merged.summaries[""]?.count == 20)
        #expect(merged.summaries["raw"]?.count == 6)
        let json = try jsonObject(merged.json)
        let tags = try #require(json["tags"] as? [String: Any])
        #expect((tags["raw"] as? [String: Any])?["count"] as? Int == 6)
        // Each tag's own mean (1...10 and 1...3), never one mean for all.
        #expect((tags[""] as? [String: Any])?["mean"] as? Double == 5.5)
        #expect((tags["raw"] as? [String: Any])?["mean"] as? Double == 2.0)
    }

    @Test func mergeThroughTheBinary() async throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileIO.write(try Self.log(start: 1_700_000_000, [(0, Self.histogram(1...1000))]), to: dir + "/a.hlog")
        try FileIO.write(try Self.log(start: 1_700_000_100, [(0, Self.histogram(1001...2000))]), to: dir + "/b.hlog")
        let r = try await runZcr([
            "load", "merge", dir + "/a.hlog", dir + "/b.hlog", "-o", dir + "/m.hlog",
            "--json", dir + "/m.json",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("merged 2 logs, 2 intervals"))
        #expect(r.stdout.contains("latency: count 2,000"))
        let merged = try HdrLogFile(text: String(decoding: try FileIO.read(dir + "/m.hlog"), as: UTF8.self), name: "m")
        #expect(merged.intervals.map(\.histogram.totalCount) == [1000, 1000])
        #expect(merged.intervals.map(\.start) == [1_700_000_000, 1_700_000_100])
        let json = try jsonObject(String(decoding: try FileIO.read(dir + "/m.json"), as: UTF8.self))
        #expect(json["files"] as? Int == 2)

        let missing = try await runZcr(["load", "merge", dir + "/nope.hlog"])
        #expect(missing.status == 1)
        #expect(missing.stderrLines == ["zcr load: merge: \(dir)/nope.hlog: No such file or directory"])
    }
}
