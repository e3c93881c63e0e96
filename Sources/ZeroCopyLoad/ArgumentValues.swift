// Parsing of the command line's values: durations ("10s", "500ms", "2m"), sizes ("64", "4k", "1MiB"), counts and
// rates ("10000", "10k"). Each failure is one line naming the flag. Pure functions: no I/O, no state.

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
