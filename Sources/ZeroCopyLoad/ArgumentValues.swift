// Parsing of the command line's values: durations ("10s", "500ms", "2m"), sizes ("64", "4k", "1MiB"), counts and
// rates ("10000", "10k"), wall-clock times (RFC 3339, Unix seconds). Each failure is one line naming the flag. Pure
// functions: no I/O, no state.
import Glibc

public enum ArgumentValues {
    /// "1.5s", "500ms", "250us", "2m", "1h", or a bare number of seconds. Never negative.
    public static func duration(_ text: String, flag: String) throws(LoadError) -> Duration {
        let units: [(String, Double)] = [
            ("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("s", 1), ("m", 60), ("h", 3600),
        ]
        var number = Substring(text)
        var scale = 1.0
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number), value.isFinite else {
            throw LoadError("\(flag): '\(text)' is not a duration (examples: 10s, 500ms, 2m)")
        }
        guard value >= 0 else { throw LoadError("\(flag) must not be negative, not \(text)") }
        let nanos = value * scale * 1e9
        guard nanos < 1e18 else { throw LoadError("\(flag): \(text) is too long") }
        return .nanoseconds(Int64(nanos.rounded()))
    }

    /// A byte count: "64", "4k"/"4KiB" (x1024), "1m"/"1MiB" (x1024*1024).
    public static func size(_ text: String, flag: String) throws(LoadError) -> Int {
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("k", 1 << 10), ("K", 1 << 10),
            ("m", 1 << 20), ("M", 1 << 20), ("g", 1 << 30), ("G", 1 << 30),
        ]
        return try scaled(text, flag: flag, what: "a byte count (examples: 64, 4k, 1MiB)", units: units)
    }

    /// A count: "10000" or "10k" (x1000).
    public static func count(_ text: String, flag: String) throws(LoadError) -> Int {
        try scaled(
            text, flag: flag, what: "a whole number (examples: 100, 10k)",
            units: [("k", 1000), ("K", 1000), ("M", 1_000_000)])
    }

    /// A rate per second: a positive number, "10k" (x1000) allowed.
    public static func rate(_ text: String, flag: String) throws(LoadError) -> Double {
        var number = Substring(text)
        var scale = 1.0
        if text.hasSuffix("k") || text.hasSuffix("K") {
            number = text.dropLast()
            scale = 1000
        }
        if text.hasSuffix("M") {
            number = text.dropLast()
            scale = 1_000_000
        }
        guard let value = Double(number), value.isFinite else {
            throw LoadError("\(flag): '\(text)' is not a rate per second (examples: 1000, 2.5k)")
        }
        guard value > 0 else { throw LoadError("\(flag) must be greater than 0, not \(text)") }
        return value * scale
    }

    /// A wall-clock instant as seconds since the epoch: Unix seconds ("1764592200", "1764592200.25") or RFC 3339
    /// ("2026-12-01T12:30:00Z", "2026-12-01T12:30:00.5+01:00"; a space for the T, a lower-case t or z too).
    public static func wallClock(_ text: String, flag: String) throws(LoadError) -> Double {
        let bad = LoadError("\(flag): '\(text)' is not a time (RFC 3339 such as 2026-12-01T12:30:00Z, or Unix seconds)")
        if let v = Double(text), text.first?.isNumber == true {
            guard v.isFinite, v < 1e11 else { throw bad }
            return v
        }
        let b = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var v = 0
            for c in b[from..<from + count] {
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            return v
        }
        guard b.count >= 20, let year = number(0, 4), b[4] == 45, let month = number(5, 2), b[7] == 45,
            let day = number(8, 2), [84, 116, 32].contains(b[10]), let hour = number(11, 2), b[13] == 58,
            let minute = number(14, 2), b[16] == 58, let second = number(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60
        else { throw bad }
        var i = 19
        var fraction = 0.0
        if b[i] == 46 {  // '.'
            var scale = 0.1
            i += 1
            let start = i
            while i < b.count, b[i] >= 48 && b[i] <= 57 {
                fraction += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
            guard i > start else { throw bad }
        }
        guard i < b.count else { throw bad }
        var offset = 0
        if b[i] == 90 || b[i] == 122 {  // Z
            guard i + 1 == b.count else { throw bad }
        } else if b[i] == 43 || b[i] == 45 {  // + or -
            guard i + 6 == b.count, let oh = number(i + 1, 2), b[i + 3] == 58, let om = number(i + 4, 2), oh < 24,
                om < 60
            else { throw bad }
            offset = (oh * 3600 + om * 60) * (b[i] == 43 ? 1 : -1)
        } else {
            throw bad
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = timegm(&parts)
        guard seconds != -1 || (year == 1969) else { throw bad }
        return Double(seconds - offset) + fraction
    }

    private static func scaled(_ text: String, flag: String, what: String, units: [(String, Int)]) throws(LoadError)
        -> Int
    {
        var number = Substring(text)
        var scale = 1
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Int(number) else {
            if let d = Double(number), d < 0 { throw LoadError("\(flag) must not be negative, not \(text)") }
            throw LoadError("\(flag): '\(text)' is not \(what)")
        }
        guard value >= 0 else { throw LoadError("\(flag) must not be negative, not \(text)") }
        let (product, overflow) = value.multipliedReportingOverflow(by: scale)
        guard !overflow else { throw LoadError("\(flag): \(text) is too large") }
        return product
    }
}

extension Duration {
    /// Whole nanoseconds (saturating; durations here are far below the limit).
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
    }

    var seconds: Double { Double(nanoseconds) / 1e9 }
}
