// One inline SVG line chart over the run's time axis, with the measured window shaded. Pure string building for
// the HTML report; it must never fetch anything (no fonts, no scripts, no external references).

struct SVGChart {
    struct Series {
        var name: String
        var color: String
        var points: [(x: Double, y: Double)]
    }

    var title: String
    var series: [Series]
    var window: (start: Double, end: Double)
    var yLabel: (Double) -> String
    /// Round the y axis to 1-2-5 steps of KiB/MiB/GiB rather than of decimal units.
    var binary = true
    var width = 960.0
    var height = 240.0

    func render() -> String {
        let left = 90.0
        let right = 20.0
        let top = 34.0
        let bottom = 36.0
        let plotW = width - left - right
        let plotH = height - top - bottom
        let all = series.flatMap(\.points)
        let maxX = max(all.map(\.x).max() ?? 1, window.end, 0.001)
        let rawMaxY = all.map(\.y).max() ?? 0
        let maxY = rawMaxY > 0 ? Self.niceCeiling(rawMaxY, binary: binary) : 1
        func px(_ x: Double) -> Double { left + x / maxX * plotW }
        func py(_ y: Double) -> Double { top + plotH - min(max(y, 0), maxY) / maxY * plotH }

        var s =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(n(width)) \(n(height))\" role=\"img\" "
            + "aria-label=\"\(HTML.escape(title))\" class=\"chart\">\n"
        s += "<text x=\"\(n(left))\" y=\"20\" class=\"ct\">\(HTML.escape(title))</text>\n"
        // The measured window.
        let wx = px(window.start)
        let ww = max(1, px(window.end) - wx)
        s += "<rect x=\"\(n(wx))\" y=\"\(n(top))\" width=\"\(n(ww))\" height=\"\(n(plotH))\" class=\"win\"/>\n"
        s += "<text x=\"\(n(wx + 4))\" y=\"\(n(top + 14))\" class=\"wl\">measured window</text>\n"
        // Grid and y labels.
        for i in 0...4 {
            let v = maxY * Double(i) / 4
            let y = py(v)
            s += "<line x1=\"\(n(left))\" y1=\"\(n(y))\" x2=\"\(n(left + plotW))\" y2=\"\(n(y))\" class=\"grid\"/>"
            s += "<text x=\"\(n(left - 6))\" y=\"\(n(y + 4))\" class=\"yl\">\(HTML.escape(yLabel(v)))</text>\n"
        }
        // X ticks in seconds: 1, 2 or 5 times a power of ten apart, each labelled with as many decimals as the step
        // needs (0.05 s steps read 0.05, 0.10, 0.15: no label repeats).
        let step = Self.niceCeiling(maxX / 8)
        let decimals = Self.decimals(step)
        for i in 0...Int((maxX / step + 1e-9).rounded(.down)) {
            let t = Double(i) * step
            let x = px(t)
            s +=
                "<line x1=\"\(n(x))\" y1=\"\(n(top + plotH))\" x2=\"\(n(x))\" y2=\"\(n(top + plotH + 4))\""
                + " class=\"axis\"/>"
            s +=
                "<text x=\"\(n(x))\" y=\"\(n(top + plotH + 18))\" class=\"xl\">"
                + "\(Format.fixed(t, decimals)) s</text>\n"
        }
        s +=
            "<line x1=\"\(n(left))\" y1=\"\(n(top + plotH))\" x2=\"\(n(left + plotW))\" y2=\"\(n(top + plotH))\""
            + " class=\"axis\"/>\n"
        // Lines, with a dot per sample (runs are short: a dot shows where the samples are).
        for (i, line) in series.enumerated() where !line.points.isEmpty {
            let path = line.points.map { "\(n(px($0.x))),\(n(py($0.y)))" }.joined(separator: " ")
            s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"2\"/>\n"
            for p in line.points {
                s += "<circle cx=\"\(n(px(p.x)))\" cy=\"\(n(py(p.y)))\" r=\"2.5\" fill=\"\(line.color)\"/>"
            }
            // Legend entries side by side after the title (about 6.5 px per character at 11 px).
            let lx =
                left + Double(title.count) * 8 + 24 + series[..<i].reduce(0.0) { $0 + Double($1.name.count) * 6.5 + 34 }
            s += "\n<rect x=\"\(n(lx))\" y=\"11\" width=\"10\" height=\"10\" fill=\"\(line.color)\"/>"
            s += "<text x=\"\(n(lx + 14))\" y=\"20\" class=\"lg\">\(HTML.escape(line.name))</text>\n"
        }
        if all.isEmpty {
            s += "<text x=\"\(n(left + plotW / 2))\" y=\"\(n(top + plotH / 2))\" class=\"xl\">unavailable</text>\n"
        }
        return s + "</svg>\n"
    }

    /// With `binary`, 1, 2 or 5 times a power of ten of the largest binary unit (1024^k) not above `v`.
    static func niceCeiling(_ v: Double, binary: Bool) -> Double {
        guard binary, v >= 1024 else { return niceCeiling(v) }
        var unit = 1.0
        while unit * 1024 <= v { unit *= 1024 }
        var scaled = niceCeiling(v / unit)
        if scaled >= 1024 {  // 1016 MiB rounds to 2000 MiB: say 1 GiB instead
            unit *= 1024
            scaled = niceCeiling(v / unit)
        }
        return scaled * unit
    }

    /// Decimals that show every multiple of `step` (a 1-2-5 step) exactly: 0.05 → 2, 0.2 → 1, 5 → 0.
    static func decimals(_ step: Double) -> Int {
        var d = 0
        var scaled = step
        while d < 9 && abs(scaled - scaled.rounded()) > 1e-6 * max(1, scaled) {
            scaled *= 10
            d += 1
        }
        return d
    }

    /// The x-axis tick labels `render` writes, in order (for tests).
    func tickLabels() -> [String] {
        let all = series.flatMap(\.points)
        let maxX = max(all.map(\.x).max() ?? 1, window.end, 0.001)
        let step = Self.niceCeiling(maxX / 8)
        return (0...Int((maxX / step + 1e-9).rounded(.down))).map { "\(Format.fixed(Double($0) * step, Self.decimals(step))) s" }
    }

    /// 1, 2 or 5 times a power of ten, at least `v`.
    static func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        var p = 1.0
        while p * 10 <= v { p *= 10 }
        while p > v { p /= 10 }
        for m in [1.0, 2.0, 5.0, 10.0] where p * m >= v { return p * m }
        return p * 10
    }

    private func n(_ v: Double) -> String { Format.fixed(v, 1) }
}
