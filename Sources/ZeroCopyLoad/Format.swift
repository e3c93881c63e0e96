// Number formatting for the summary, progress lines and JSON, without Foundation: fixed decimals, thousands
// separators, byte units. Pure functions.

import ZeroCopyText

enum Format {
    /// `value` with `digits` decimals.
    static func fixed(_ value: Double, _ digits: Int = 1) -> String { Text.fixed(value, digits) }

    /// 1234567 -> "1,234,567"
    static func grouped(_ value: Int) -> String {
        let digits = String(Swift.abs(value))
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return value < 0 ? "-" + out : out
    }

    /// Bytes as "12.3 MB" (decimal units, as throughput is usually quoted).
    static func bytes(_ value: Double) -> String {
        if value >= 1e9 { return fixed(value / 1e9, 2) + " GB" }
        if value >= 1e6 { return fixed(value / 1e6, 1) + " MB" }
        if value >= 1e3 { return fixed(value / 1e3, 1) + " kB" }
        return fixed(value, 0) + " B"
    }
}
