// Numbers for people: bytes in binary units, rates, counts with thousands separators, fixed decimals. No Foundation.
// Display only; it must never be used for a figure in the JSON (which carries raw numbers).

import ZeroCopyText

enum Format {
    static func fixed(_ value: Double, _ digits: Int = 1) -> String { Text.fixed(value, digits) }

    static func bytes(_ value: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = value
        var i = 0
        while abs(v) >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(Int(v)) B" : "\(fixed(v, abs(v) < 10 ? 2 : 1)) \(units[i])"
    }

    static func bytes(_ value: Int) -> String { bytes(Double(value)) }
    static func bytes(_ value: UInt64) -> String { bytes(Double(value)) }
    static func bytes(_ value: Int?) -> String { value.map { bytes(Double($0)) } ?? "unavailable" }
    static func bytes(_ value: UInt64?) -> String { value.map { bytes(Double($0)) } ?? "unavailable" }

    static func rate(_ value: Double?) -> String { value.map { bytes($0) + "/s" } ?? "unavailable" }

    static func count(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return (value < 0 ? "-" : "") + out
    }

    static func count(_ value: UInt64?) -> String { value.map { count(Int(clamping: $0)) } ?? "unavailable" }

    /// A ratio with three significant digits (0.000954, 1.00, 149.8); whole numbers as counts.
    static func ratio(_ value: Double?) -> String {
        guard let v = value else { return "unavailable" }
        if v == 0 { return "0" }
        if v == v.rounded() && abs(v) >= 1 && abs(v) < 1e15 { return count(Int(v)) }
        var digits = 2
        var m = abs(v)
        while m < 1 && digits < 15 {
            m *= 10
            digits += 1
        }
        return fixed(v, abs(v) >= 100 ? 1 : digits)
    }

    static func seconds(_ value: Double) -> String { fixed(value, value < 10 ? 2 : 1) + " s" }
}
