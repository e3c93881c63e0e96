// The report's two renderings: the JSON has every field the issue names, in the documented order, documented in
// docs/profile.md, with null (never 0) for what was not measured; the HTML stands alone and puts the verdict first.
import Foundation
import Testing

@testable import ZeroCopyProfiler

@Suite struct ReportRenderingTests {
    static func window(allocated: UInt64?) -> WindowFigures {
        let start = MeterSnapshot(
            nanos: 0,
            loops: [
                reading(
                    loop: 0, allocated: 0, requests: allocated == nil ? nil : 0,
                    bytesWritten: 0)
            ])
        let end = MeterSnapshot(
            nanos: 1_000_000_000,
            loops: [
                reading(
                    loop: 0, allocated: allocated, requests: allocated == nil ? nil : 0, bytesWritten: 1000 << 20,
                    verified: 41, send: 41, slices: 1)
            ])
        var w = WindowFigures(
            start: start, end: end, durationNanos: 1_000_000_000, writes: 1, peakRSS: (200 << 20) + 4096)
        w.rssAtStart = 200 << 20
        return w
    }

    /// The fields the issue names, in the order the JSON has them.
    static let issueFields = [
        "scenario", "copy_control", "zero_copy", "thresholds", "allocator", "bytes_sent", "reactor_bytes_allocated",
        "reactor_allocations", "allocated_bytes_per_byte_sent", "allocations_per_write", "bytes_copied",
        "verified_iovecs", "foreign_iovecs", "peak_rss_growth_bytes", "throughput_bytes_per_s", "sendmsg_calls",
        "slices_per_call", "timeline",
    ]

    static func topLevelKeys(_ report: ProfileReport) -> [String] {
        guard case .object(let members) = report.jsonValue() else { return [] }
        return members.map(\.0)
    }

    @Test func theIssuesFieldsArePresentInOrder() throws {
        let keys = Self.topLevelKeys(craftedReport(Self.window(allocated: 0)))
        let positions = Self.issueFields.map { keys.firstIndex(of: $0) }
        #expect(!positions.contains(nil), "missing: \(Self.issueFields.filter { !keys.contains($0) })")
        let found = positions.compactMap { $0 }
        #expect(found == found.sorted())
    }

    @Test func everyFieldIsDocumented() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/profile.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let report = craftedReport(Self.window(allocated: 0))
        var names = Self.topLevelKeys(report)
        for nested in ["allocator", "thresholds", "heap", "window"] {
            if case .object(let top) = report.jsonValue(), let value = top.first(where: { $0.0 == nested })?.1,
                case .object(let members) = value
            {
                names += members.map(\.0)
            }
        }
        if case .object(let top) = report.jsonValue(),
            case .array(let samples)? = top.first(where: { $0.0 == "timeline" })?.1,
            case .object(let members)? = samples.first
        {
            names += members.map(\.0)
        }
        let undocumented = names.filter { !text.contains("`\($0)`") }
        #expect(undocumented.isEmpty, "not in docs/profile.md: \(undocumented)")
    }

    /// Every key at every depth, attached reports included (the `attached` object is null for scenarios).
    @Test func everyFieldAtEveryDepthIsDocumented() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/profile.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        var report = craftedReport(Self.window(allocated: 0))
        report.attached = AttachedServer(
            path: "/tmp/s", pid: 1, copyControl: "reuse", verifyIovecs: true, allocationCountsExact: false,
            warmupSeconds: 1, durationSeconds: 2, sampleIntervalSeconds: 0.03)
        let undocumented = allKeys(report.jsonValue()).filter { !text.contains("`\($0)`") }
        #expect(undocumented.isEmpty, "not in docs/profile.md: \(undocumented)")
    }

    @Test func theJSONParsesAndCarriesTheFigures() throws {
        let report = craftedReport(Self.window(allocated: 64))
        let json = try JSONObject(Data(report.json().utf8))
        #expect(json["scenario"].string == "seed-large")
        #expect(json["zero_copy"].bool == true)
        #expect(json["bytes_sent"].int == 1000 << 20)
        #expect(json["reactor_bytes_allocated"].int == 64)
        #expect(json["allocations_per_write"].double == 0)
        #expect(json["peak_rss_growth_bytes"].int == 4096)
        #expect(json["thresholds"]["max_allocated_bytes_per_byte_sent"].double == 0.001)
        #expect(json["timeline"].array.count == 1)
        #expect(json["reactor_threads"][0]["arena"].int == 9)
        #expect(
            json["verdict_checks"].array.map { $0["name"].string } == [
                "allocated_bytes_per_byte_sent", "bytes_copied", "foreign_iovecs", "memcpy_bytes_per_byte_sent",
            ])
    }

    @Test func unmeasuredFiguresAreNullNotZero() throws {
        let absent = AllocatorInfo(
            name: "unknown (not jemalloc)", isJemalloc: false, statisticsAvailable: false,
            library: nil, preloaded: false, mallocConf: nil, note: "no mallctl")
        let report = craftedReport(Self.window(allocated: nil), allocator: absent)
        let json = try JSONObject(Data(report.json().utf8))
        for key in [
            "reactor_bytes_allocated", "reactor_allocations", "allocated_bytes_per_byte_sent", "allocations_per_write",
        ] {
            #expect(json[key].isNull, "\(key) should be null")
        }
        #expect(json["zero_copy"].bool == false)
        #expect(json["allocator"]["jemalloc"].bool == false)
        #expect(json["allocator"]["version"].isNull)
        #expect(json["verdict_checks"][0]["value"].isNull)
        #expect(json["reactor_threads"][0]["bytes_allocated"].isNull)
    }

    @Test func jsonStringsAndNumbersAreValid() throws {
        let text = JSONValue.object([
            ("s", .string("a\"b\\c\nd\u{1}é")), ("inf", .double(.infinity)), ("nan", .double(.nan)),
            ("third", .double(1.0 / 3)), ("whole", .double(2)), ("big", .uint(UInt64.max)),
        ]).render()
        let json = try JSONObject(Data(text.utf8))
        #expect(json["s"].string == "a\"b\\c\nd\u{1}é")
        #expect(json["inf"].isNull)
        #expect(json["nan"].isNull)
        #expect(json["third"].double == 1.0 / 3)
        #expect(text.contains("\"whole\": 2"))
        #expect(text.contains("18446744073709551615"))
    }

    @Test func theHTMLStandsAloneWithTheVerdictFirst() {
        let report = craftedReport(Self.window(allocated: 0), notes: ["<b>escaped</b> & kept"])
        let html = report.html()
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        for forbidden in ["<script", "<link", "<img", "<iframe", "src=", "url(", "@import", "https:"] {
            #expect(!html.contains(forbidden), "the page must not reference \(forbidden)")
        }
        // The only URL is the SVG namespace, which browsers never fetch.
        #expect(html.components(separatedBy: "http:").count - 1 == html.components(separatedBy: "<svg").count - 1)
        #expect(
            html.components(separatedBy: "<svg")[0].contains("Zero copy: YES"), "the verdict comes before the charts")
        #expect(html.components(separatedBy: "<svg").count - 1 == 3)
        #expect(html.contains("class=\"win\""))  // the measured window, shaded in each chart
        #expect(html.contains("&lt;b&gt;escaped&lt;/b&gt; &amp; kept"))
        #expect(!html.contains("<b>escaped"))
    }

    @Test func aFalseVerdictSaysWhy() {
        let w = VerdictTests.window(
            allocated: 1000 << 20, requests: 1, sent: 1000 << 20, writes: 1, rssGrowth: 0,
            copied: 1000 << 20, foreign: 41)
        let report = craftedReport(w, copyControl: true)
        let html = report.html()
        #expect(html.contains("Zero copy: NO"))
        #expect(html.contains("copy control"))
        #expect(report.summary.contains("zero copy NO"))
        #expect(report.summary.contains("failed: bytes_copied"))
        #expect(report.summary.contains("failed: foreign_iovecs"))
    }
}

/// Every object key in `value`, at any depth, once each.
func allKeys(_ value: JSONValue) -> [String] {
    var seen: [String] = []
    func visit(_ v: JSONValue) {
        switch v {
        case .object(let members):
            for (k, m) in members {
                if !seen.contains(k) { seen.append(k) }
                visit(m)
            }
        case .array(let items): items.forEach(visit)
        default: break
        }
    }
    visit(value)
    return seen
}
