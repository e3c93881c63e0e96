// `zcr load merge`: combines interval logs from any number of runs or machines into one distribution per tag and
// one merged interval log (intervals summed per whole second of wall-clock time). Reads files; never measures.
import Histogram

public struct HdrMergeResult: Sendable {
    public let files: Int
    /// Interval lines read, all files and tags together.
    public let intervals: Int
    /// Tags found, "" for untagged lines (zcr's corrected latency), in order of first appearance.
    public let tags: [String]
    /// The whole merged distribution of each tag, in the logs' units (zcr logs: microseconds).
    public let summaries: [String: LatencySummary]
    /// The merged interval log, in the same format.
    public let log: String
    /// Wall-clock seconds since the epoch of the merged log's zero (the earliest whole second), nil when no input
    /// said when it started.
    public let startTime: Double?

    /// A few lines: files, intervals, and the percentiles of each tag.
    public var summary: String {
        var lines = [
            "merged \(files) log\(files == 1 ? "" : "s"), \(intervals) intervals "
                + "(values in the logs' units; zcr writes µs)"
        ]
        for tag in tags {
            guard let s = summaries[tag] else {
                lines.append("  \(tag.isEmpty ? "latency" : tag): no values")
                continue
            }
            let name = tag.isEmpty ? "latency" : tag
            lines.append("  \(name): count \(Format.grouped(Int(s.count)))  \(s.line)")
        }
        return lines.joined(separator: "\n")
    }

    /// {"files", "intervals", "tags": {"": {count, min, mean, p50, ..., max}, "raw": {...}}}
    public var json: String {
        var w = JSONWriter()
        w.beginObject()
        w.value("files", files)
        w.value("intervals", intervals)
        w.value("start_time", startTime)
        w.beginObject("tags")
        for tag in tags {
            LoadReport.writeLatency(&w, tag, summaries[tag])
        }
        w.endObject()
        w.endObject()
        return w.text + "\n"
    }
}

public enum HdrMerge {
    /// Reads and merges the logs at `paths`.
    public static func merge(paths: [String]) throws(LoadError) -> HdrMergeResult {
        var logs: [(name: String, text: String)] = []
        for p in paths { logs.append((p, String(decoding: try FileIO.read(p), as: UTF8.self))) }
        return try merge(logs: logs)
    }

    public static func merge(logs: [(name: String, text: String)]) throws(LoadError) -> HdrMergeResult {
        guard !logs.isEmpty else { throw LoadError("merge needs at least one log") }
        var tags: [String] = []
        var totals: [String: Histogram<UInt64>] = [:]
        var slots: [String: [Int: Histogram<UInt64>]] = [:]
        var intervals = 0
        var counted: [String: UInt64] = [:]
        var earliest: Double?
        var anyStartTime = false
        for (name, text) in logs {
            let file = try HdrLogFile(text: text, name: name)
            guard !file.intervals.isEmpty else { throw LoadError("\(name): no interval histograms") }
            anyStartTime = anyStartTime || file.startTime != nil
            for interval in file.intervals {
                intervals += 1
                let tag = interval.tag ?? ""
                if totals[tag] == nil {
                    tags.append(tag)
                    totals[tag] = Self.empty()
                }
                // Histogram totals wrap silently: keep each tag's count checked.
                let (sum, overflow) = counted[tag, default: 0].addingReportingOverflow(interval.histogram.totalCount)
                guard !overflow, sum <= UInt64(Int64.max) else {
                    throw LoadError(
                        "\(name): counts overflow: more than 2^63 - 1 values in tag '\(tag.isEmpty ? "latency" : tag)'")
                }
                counted[tag] = sum
                interval.histogram.add(into: &totals[tag]!)
                let slot = Int(interval.start.rounded(.down))
                interval.histogram.add(into: &slots[tag, default: [:]][slot, default: Self.empty()])
                earliest = min(earliest ?? Double(slot), Double(slot))
            }
        }
        let base = earliest ?? 0
        var text = "#[zcr load merge: \(logs.count) logs, intervals summed per second]\n"
        text += HdrLogFormat.header(startTime: anyStartTime ? base : 0)
        let allSlots = Set(slots.values.flatMap(\.keys)).sorted()
        for slot in allSlots {
            for tag in tags {
                guard let h = slots[tag]?[slot] else { continue }
                text += try HdrLogFormat.line(
                    tag: tag.isEmpty ? nil : tag, start: Double(slot) - base, length: 1,
                    histogram: h)
            }
        }
        var summaries: [String: LatencySummary] = [:]
        for (tag, h) in totals { summaries[tag] = LatencySummary(h, exactMax: false) }
        return HdrMergeResult(
            files: logs.count, intervals: intervals, tags: tags, summaries: summaries, log: text,
            startTime: anyStartTime ? base : nil)
    }

    /// Target of merges: lowest 1, three digits, growing as needed (like HdrHistogram's `new Histogram(3)`).
    static func empty() -> Histogram<UInt64> {
        var h = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        h.autoResize = true
        return h
    }
}
