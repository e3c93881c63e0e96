// Text for people and for JSON, without Foundation, shared by zcr load, zcr profile and the CLI: fixed decimals
// and JSON string escaping. Pure functions; no I/O.

public enum Text {
    /// `value` with `digits` decimals ("1.50", "-3", "inf").
    public static func fixed(_ value: Double, _ digits: Int = 1) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let whole = (scaled / scale).rounded(.down)
        let frac = Int(scaled - whole * scale)
        let sign = value < 0 && scaled != 0 ? "-" : ""
        let wholeText = whole < 1e18 ? String(Int64(whole)) : "\(whole)"
        if digits == 0 { return sign + wholeText }
        let f = String(frac)
        return sign + wholeText + "." + String(repeating: "0", count: max(0, digits - f.count)) + f
    }

    /// `s` as a JSON string literal, quotes included.
    public static func jsonQuoted(_ s: String) -> String {
        var out = ""
        jsonQuote(s, into: &out)
        return out
    }

    /// Appends `s` as a JSON string literal to `out`.
    public static func jsonQuote(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
