// The report as one self-contained HTML page: the verdict first, then the timeline charts (inline SVG, the
// measured window shaded), the per-thread table, the syscall figures and the allocator's settings. It must never
// reference anything outside the file (no scripts, fonts, images or styles from the network).

enum HTML {
    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    static func row(_ cells: [String], header: Bool = false) -> String {
        let tag = header ? "th" : "td"
        return "<tr>" + cells.map { "<\(tag)>\(escape($0))</\(tag)>" }.joined() + "</tr>\n"
    }

    static func table(_ head: [String], _ rows: [[String]], numeric: Bool = true, kind: String? = nil) -> String {
        "<table class=\"\(kind ?? (numeric ? "num" : "kv"))\"><thead>\(row(head, header: true))</thead><tbody>\n"
            + rows.map { row($0) }.joined() + "</tbody></table>\n"
    }
}

extension ProfileReport {
    /// What was profiled: the scenario, or the attached server's endpoint.
    var heading: String {
        guard let a = attached else { return subject }
        return "server \(a.pid) at \(a.path)"
    }

    /// The whole page.
    public func html() -> String {
        let w = window
        var page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>zcr profile: \(HTML.escape(heading))\(copyControl ? " (\(HTML.escape(copyControlLabel)))" : "")</title>
            <style>\(Self.style)</style></head><body>
            <h1>zcr profile: \(HTML.escape(heading))\(copyControl ? " <span class=\"tag\">\(HTML.escape(copyControlLabel))</span>" : "")</h1>

            """
        page += verdictSection()
        page += "<section><h2>The measured window</h2>\n"
        page += HTML.table(
            ["figure", "value"],
            [
                ["bytes sent (all reactor threads)", "\(Format.bytes(w.bytesSent)) (\(Format.count(w.bytesSent)) B)"],
                ["window", Format.seconds(w.seconds)],
                ["throughput", Format.rate(w.throughputBytesPerSecond)],
                [
                    "reactor bytes allocated",
                    "\(Format.bytes(w.reactorBytesAllocated)) (\(Format.count(w.reactorBytesAllocated)) B)",
                ],
                ["allocated bytes per byte sent", Format.ratio(w.allocatedBytesPerByteSent)],
                ["reactor allocations", Format.count(w.reactorAllocations)],
                ["writes", attached == nil ? Format.count(w.writes) : "unknown (an attached server)"],
                ["allocations per write", Format.ratio(w.allocationsPerWrite)],
                ["bytes copied by the library", Format.bytes(w.bytesCopied)],
                [
                    "bytes memcpy'd on reactor threads",
                    "\(Format.bytes(w.reactorMemcpyBytes)) in \(Format.count(w.reactorMemcpyCalls)) calls",
                ],
                ["bytes memcpy'd on reactor threads per byte sent", Format.ratio(w.memcpyBytesPerByteSent)],
                ["read-buffer memory held at the end", Format.bytes(w.readBytesHeld)],
                ["peak RSS growth in the window", "\(Format.bytes(w.peakRSSGrowth)) (\(peakRSSMethod))"],
                ["RSS at window start / peak", "\(Format.bytes(w.rssAtStart)) / \(Format.bytes(w.peakRSS))"],
                ["driver thread allocated (not a reactor thread)", Format.bytes(w.driverAllocatedBytes)],
            ], numeric: false)
        page += "</section>\n"
        page += "<section><h2>Timeline</h2>\n" + charts() + "</section>\n"
        page += "<section><h2>Reactor threads</h2>\n" + threadTable() + "</section>\n"
        page +=
            "<section><h2>System calls and iovecs</h2>\n"
            + HTML.table(
                ["figure", "value"],
                [
                    ["send calls (one iovec)", Format.count(w.sendCalls)],
                    ["sendmsg calls (gathered)", Format.count(w.sendmsgCalls)],
                    ["slices written", Format.count(w.slicesWritten)],
                    ["slices per call", Format.ratio(w.slicesPerCall)],
                    ["partial writes", Format.count(w.partialWrites)],
                    ["EAGAIN", Format.count(w.wouldBlocks)],
                    ["iovecs verified inside the caller's memory", Format.count(w.verifiedIovecs)],
                    ["foreign iovecs (outside it)", Format.count(w.foreignIovecs)],
                ], numeric: false) + "</section>\n"
        page += "<section><h2>Allocator</h2>\n" + allocatorTable() + "</section>\n"
        page += "<section><h2>Memcpy counter</h2>\n" + memcpyTable() + "</section>\n"
        page +=
            "<section><h2>\(attached == nil ? "Scenario" : "Server")</h2>\n"
            + HTML.table(
                ["parameter", "value"],
                [["loops", "\(threads)"], ["copy control", copyControlText]] + attachedRows
                    + parameters.map { [$0.0, Format.count($0.1)] }, numeric: false)
        if !notes.isEmpty {
            page += "<ul class=\"notes\">" + notes.map { "<li>\(HTML.escape($0))</li>" }.joined() + "</ul>\n"
        }
        page +=
            "</section>\n<footer>zcr profile, report schema \(Self.schemaVersion). "
            + "Every figure is from this run; \"unavailable\" means it could not be measured exactly.</footer>\n"
        return page + "</body></html>\n"
    }

    private func verdictSection() -> String {
        let w = window
        let yes = verdict.zeroCopy
        var s =
            "<section class=\"verdict \(yes ? "ok" : "bad")\">"
            + "<div class=\"big\">Zero copy: \(yes ? "YES" : "NO")</div>\n<p>"
        s += "The reactor threads allocated \(Format.bytes(w.reactorBytesAllocated))"
        s += " while sending \(Format.bytes(w.bytesSent))"
        s += " (\(Format.ratio(w.allocatedBytesPerByteSent)) bytes per byte sent);"
        s += " the library copied \(Format.bytes(w.bytesCopied));"
        s += " \(Format.count(w.verifiedIovecs + w.foreignIovecs)) iovecs were checked"
        s += " and \(Format.count(w.foreignIovecs))"
        s += " lay outside the memory the caller appended;"
        s += " the reactor threads memcpy'd \(Format.bytes(w.reactorMemcpyBytes))"
        s += " (\(Format.ratio(w.memcpyBytesPerByteSent)) bytes per byte sent).</p>\n"
        if !yes {
            s += "<p class=\"caught\">\(HTML.escape(verdict.reason.prefix(1).uppercased() + verdict.reason.dropFirst())).</p>\n"
        }
        s += HTML.table(
            ["check", "value", "limit", "result", "meaning"], verdict.checks.map(Self.cells), kind: "checks")
        if !targets.isEmpty {
            s += "<h3>Targets\(attached == nil ? " for this scenario" : "")</h3>\n"
            s += HTML.table(["target", "value", "limit", "result", "meaning"], targets.map(Self.cells), kind: "checks")
        }
        return s + "</section>\n"
    }

    private static func cells(_ c: Check) -> [String] {
        if c.name == "zero_copy" {
            let want = c.comparison == .atLeast ? "must be true" : "must be false"
            return [
                c.name, c.value.map { $0 >= 1 ? "true" : "false" } ?? "unavailable", want, c.passed ? "pass" : "FAIL",
                c.detail,
            ]
        }
        let value: String
        if let v = c.value {
            value = c.name.hasSuffix("_bytes") || c.name == "bytes_copied" ? Format.bytes(v) : Format.ratio(v)
        } else {
            value = "unavailable"
        }
        return [
            c.name, value, "\(c.comparison.rawValue) \(Format.ratio(c.limit))", c.passed ? "pass" : "FAIL", c.detail,
        ]
    }

    private func charts() -> String {
        let window = (windowStartSeconds, windowEndSeconds)
        func points(_ f: (TimelineSample) -> Double?) -> [(x: Double, y: Double)] {
            timeline.compactMap { s in f(s).map { (s.seconds, $0) } }
        }
        let throughput = SVGChart(
            title: "Throughput (bytes sent per second, all reactor threads)",
            series: [.init(name: "sent", color: "#1f77b4", points: points { $0.throughputBytesPerSecond })],
            window: window, yLabel: { Format.bytes($0) + "/s" })
        let allocated = SVGChart(
            title: "Allocated and memcpy'd bytes",
            series: [
                .init(
                    name: "allocated, reactor threads", color: "#d62728",
                    points: points { $0.reactorBytesAllocated.map { Double($0) } }),
                .init(
                    name: "heap live", color: "#2ca02c",
                    points: points { $0.heap.map { Double($0.allocated) } }),
                .init(
                    name: "memcpy'd, reactor threads", color: "#8c564b",
                    points: points { $0.memcpyBytes.map { Double($0) } }),
            ],
            window: window, yLabel: { Format.bytes($0) })
        let rss = SVGChart(
            title: "Resident memory",
            series: [
                .init(name: "RSS (VmRSS)", color: "#9467bd", points: points { $0.rss.map { Double($0) } }),
                .init(name: "peak (VmHWM)", color: "#ff7f0e", points: points { $0.rssPeak.map { Double($0) } }),
            ],
            window: window, yLabel: { Format.bytes($0) })
        return throughput.render() + allocated.render() + rss.render()
    }

    private func threadTable() -> String {
        HTML.table(
            [
                "loop", "thread id", "arena", "allocated", "freed", "allocations", "sent", "received", "syscalls",
                "slices", "copied", "memcpy'd", "read memory held",
            ],
            window.threads.map { t in
                [
                    "\(t.loop)", "\(t.threadID)", t.arena.map { "\($0)" } ?? "none",
                    Format.bytes(t.allocatedBytes), Format.bytes(t.deallocatedBytes), Format.count(t.allocations),
                    Format.bytes(t.bytesWritten), Format.bytes(t.bytesRead), Format.count(t.write.syscalls),
                    Format.count(t.write.slicesWritten), Format.bytes(t.bytesCopied), Format.bytes(t.memcpyBytes),
                    Format.bytes(t.readBytesHeld),
                ]
            })
    }

    private func allocatorTable() -> String {
        let a = allocator
        func show(_ v: Int?) -> String { v.map { "\($0)" } ?? "unavailable" }
        func show(_ v: Bool?) -> String { v.map { $0 ? "yes" : "no" } ?? "unavailable" }
        return HTML.table(
            ["setting", "value"],
            [
                ["allocator", a.name],
                ["version", a.version ?? "unavailable"],
                ["library", a.library ?? "unavailable"],
                ["loaded by", a.isJemalloc ? (a.preloaded ? "LD_PRELOAD" : "linked") : "n/a"],
                ["statistics", show(a.statisticsAvailable)],
                ["arenas (now, incl. created)", show(a.arenas)],
                ["automatic arenas (opt.narenas)", show(a.automaticArenas)],
                ["reactor threads on their own arenas", show(dedicatedArenas)],
                ["thread cache (opt.tcache)", show(a.threadCache)],
                ["thread cache max size", a.threadCacheMaxBytes.map { Format.bytes($0) } ?? "unavailable"],
                ["oversize threshold", a.oversizeThresholdBytes.map { Format.bytes($0) } ?? "unavailable"],
                ["background thread", show(a.backgroundThread)],
                ["dirty / muzzy decay (ms)", "\(show(a.dirtyDecayMs)) / \(show(a.muzzyDecayMs))"],
                ["heap profiling (opt.prof)", show(a.profiling)],
                ["MALLOC_CONF", a.mallocConf ?? "(not set)"],
                ["note", a.note],
            ], numeric: false)
    }

    /// "copy control", or "copy control: reuse" for an attached server's.
    private var copyControlLabel: String { attached?.copyControl.map { "copy control: \($0)" } ?? "copy control" }

    private var copyControlText: String {
        if let a = attached { return a.copyControl ?? "none" }
        return copyControl ? "yes (writeCopying)" : "no"
    }

    private var attachedRows: [[String]] {
        guard let a = attached else { return [] }
        return [
            ["endpoint", a.path], ["pid", "\(a.pid)"], ["verify mode (iovec checks)", a.verifyIovecs ? "on" : "off"],
            ["allocation counts exact", a.allocationCountsExact ? "yes (thread caches off)" : "no"],
            ["warm-up", Format.seconds(a.warmupSeconds)], ["window asked for", Format.seconds(a.durationSeconds)],
            ["sample interval", Format.seconds(a.sampleIntervalSeconds)],
        ]
    }

    private func memcpyTable() -> String {
        let m = memcpyCounter
        return HTML.table(
            ["setting", "value"],
            [
                ["counter", m.present ? "present" : "absent (figures unavailable)"],
                ["loaded by", m.present ? (m.library.map { "LD_PRELOAD (\($0))" } ?? "linked into the executable") : "n/a"],
                ["threshold", m.thresholdBytes.map { "calls of at least \(Format.bytes($0))" } ?? "unavailable"],
            ], numeric: false)
    }

    static let copyControlTag = " <span class=\"tag\">copy control</span>"

    static let style = """
        body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1000px;margin:24px auto;
        padding:0 16px;color:#222}
        h1{font-size:24px;margin:0 0 12px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
        h3{font-size:15px}
        .tag{font-size:14px;background:#fde2c8;border-radius:4px;padding:2px 6px;vertical-align:middle}
        .verdict{border-radius:8px;padding:12px 16px}.verdict.ok{background:#e3f5e1;border:2px solid #2e7d32}
        .verdict.bad{background:#fbe4e4;border:2px solid #c62828}.big{font-size:28px;font-weight:700}
        .ok .big{color:#2e7d32}.bad .big{color:#c62828}
        table{border-collapse:collapse;margin:8px 0;font-size:14px}th,td{border:1px solid #ccc;padding:3px 8px}
        th{background:#f3f3f3;text-align:left}table.num td{text-align:right}table.kv td:first-child{color:#555}
        table.checks td:nth-child(2),table.checks td:nth-child(3){text-align:right;white-space:nowrap}
        td.FAIL,table.checks td:nth-child(4){font-weight:600}
        .chart{width:100%;height:auto;margin:6px 0 14px;background:#fff}
        .chart .ct{font-size:14px;font-weight:600}.chart .win{fill:#dbeafe;stroke:#93c5fd}
        .chart .wl{font-size:11px;fill:#1e40af}
        .chart .grid{stroke:#eee}.chart .axis{stroke:#888}.chart .yl{font-size:11px;text-anchor:end;fill:#555}
        .chart .xl{font-size:11px;text-anchor:middle;fill:#555}.chart .lg{font-size:11px}
        .caught{font-weight:600;color:#c62828}
        .notes{font-size:13px;color:#555}footer{margin:32px 0;font-size:12px;color:#777}
        """
}
