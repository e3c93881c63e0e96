// Small output helpers shared by the subcommands: fixed-point numbers without Foundation, and flushing stdout.
import Glibc

enum Output {
    /// `value` with `digits` decimals.
    static func fixed(_ value: Double, _ digits: Int = 1) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let whole = Int(scaled / scale)
        let frac = Int(scaled.truncatingRemainder(dividingBy: scale))
        let sign = value < 0 && scaled != 0 ? "-" : ""
        if digits == 0 { return "\(sign)\(whole)" }
        let f = String(frac)
        return "\(sign)\(whole).\(String(repeating: "0", count: digits - f.count))\(f)"
    }

    static func line(_ text: String) {
        print(text)
        fflush(nil)
    }
}
