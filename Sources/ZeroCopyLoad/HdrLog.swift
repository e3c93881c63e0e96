// The HdrHistogram interval log (.hlog, format 1.3): writing one per run, one line per interval and tag, and
// reading any such log (ours, jHiccup's, HdrHistogram's Java writer's). Owns the file text only: it never measures
// and never merges (HdrMerge does).
import Glibc
import Histogram

/// Writes `#[StartTime: ...]`, the legend, then `[Tag=T,]start,length,max,HISTF...` lines. Values are in
/// microseconds, so the Interval_Max column (value / 1000) is in milliseconds, as HdrHistogram tools expect.
final class HdrLogWriter {
    private var file: UnsafeMutablePointer<FILE>?
    let path: String
    /// errno of the first write that failed (a full disk, /dev/full), 0 while every write succeeded.
    private var writeErrno: Int32 = 0
    /// Wall-clock seconds since the epoch at the log's zero.
    private(set) var startTime = 0.0

    /// Opens (truncates) the file at once, so a bad path fails before any connection is made.
    init(path: String) throws(LoadError) {
        guard let f = fopen(path, "w") else {
            throw LoadError("--hdr-log \(path): \(String(cString: strerror(errno)))")
        }
        file = f
        self.path = path
    }

    /// The header, written when the measured window starts (`startTime`: its wall-clock time).
    func begin(startTime: Double, comment: String) {
        self.startTime = startTime
        write("#[\(comment)]\n")
        write(HdrLogFormat.header(startTime: startTime))
        flush()
    }

    deinit { if let file { fclose(file) } }

    /// Closes the file; throws the first write error (checked after the run, since a full disk fails only then).
    func close() throws(LoadError) {
        if let f = file {
            file = nil
            if fclose(f) != 0 && writeErrno == 0 { writeErrno = errno }
        }
        guard writeErrno == 0 else {
            throw LoadError("--hdr-log \(path): write failed: \(String(cString: strerror(writeErrno)))")
        }
    }

    /// One interval: `start` seconds after the log's StartTime, `length` seconds long.
    func append(tag: String?, start: Double, length: Double, histogram: Histogram<UInt64>) throws(LoadError) {
        write(try HdrLogFormat.line(tag: tag, start: start, length: length, histogram: histogram))
    }

    func flush() {
        guard let file else { return }
        if fflush(file) != 0 && writeErrno == 0 { writeErrno = errno }
    }

    private func write(_ text: String) {
        guard let file else { return }
        if text.withCString({ fputs($0, file) }) < 0 && writeErrno == 0 { writeErrno = errno }
    }
}

enum HdrLogFormat {
    static func header(startTime: Double) -> String {
        var t = time_t(startTime)
        var parts = tm()
        gmtime_r(&t, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        let date = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "#[Histogram log format version 1.3]\n"
            + "#[StartTime: \(Format.fixed(startTime, 3)) (seconds since epoch), \(date)]\n"
            + "#[BaseTime: \(Format.fixed(startTime, 3)) (seconds since epoch)]\n"
            + "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n"
    }

    static func line(tag: String?, start: Double, length: Double, histogram: Histogram<UInt64>) throws(LoadError)
        -> String
    {
        let encoded = try HdrEncoding.encode(histogram)
        let max = histogram.totalCount == 0 ? 0 : Double(histogram.max) / 1000
        let prefix = tag.map { "Tag=\($0)," } ?? ""
        return "\(prefix)\(Format.fixed(start, 3)),\(Format.fixed(length, 3)),\(Format.fixed(max, 3)),\(encoded)\n"
    }
}

/// A parsed interval log.
struct HdrLogFile {
    struct Interval {
        var tag: String?
        /// Seconds: since the epoch when the log says when it started, else as written.
        var start: Double
        var length: Double
        var histogram: HdrEncoding.Decoded
    }

    var startTime: Double?
    var intervals: [Interval] = []

    /// Parses `text`; errors name `name` and the line.
    init(text: String, name: String) throws(LoadError) {
        var baseTime: Double?
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.isEmpty || line.hasPrefix("\"StartTimestamp\"") { continue }
            if line.hasPrefix("#") {
                for (prefix, isStart) in [("#[StartTime: ", true), ("#[BaseTime: ", false)] {
                    guard let v = Self.headerNumber(line, prefix) else { continue }
                    guard v.isFinite && abs(v) <= Self.maxSeconds else {
                        throw LoadError("\(name):\(lineNumber): \(isStart ? "StartTime" : "BaseTime") out of range")
                    }
                    if isStart { startTime = v } else { baseTime = v }
                }
                continue
            }
            var fields = line.split(separator: ",", omittingEmptySubsequences: false)
            var tag: String?
            if let first = fields.first, first.hasPrefix("Tag=") {
                tag = String(first.dropFirst(4))
                fields.removeFirst()
            }
            guard fields.count == 4, let start = Double(fields[0]), let length = Double(fields[1]) else {
                throw LoadError("\(name):\(lineNumber): not an interval line ([Tag=T,]start,length,max,histogram)")
            }
            guard start.isFinite, abs(start) <= Self.maxSeconds, length.isFinite, length >= 0, length <= Self.maxSeconds
            else {
                throw LoadError("\(name):\(lineNumber): interval start or length out of range")
            }
            let histogram: HdrEncoding.Decoded
            do {
                histogram = try HdrEncoding.decode(base64: fields[3])
            } catch {
                throw LoadError("\(name):\(lineNumber): \(error.message)")
            }
            // HdrHistogram's reader rule: timestamps more than a year before StartTime are relative to it.
            var absolute = start
            if let b = baseTime {
                absolute = b + start
            } else if let s = startTime, start < s - 365 * 24 * 3600 {
                absolute = s + start
            }
            intervals.append(Interval(tag: tag, start: absolute, length: length, histogram: histogram))
        }
    }

    /// Times in a log are seconds, since the epoch or since its start: anything beyond ±10^11 (the year 5138) is
    /// corruption, and refusing it keeps every later sum and conversion finite.
    static let maxSeconds = 1e11

    private static func headerNumber(_ line: Substring, _ prefix: String) -> Double? {
        guard line.hasPrefix(prefix) else { return nil }
        let rest = line.dropFirst(prefix.count)
        return Double(rest.prefix { $0 == "." || $0.isNumber })
    }
}
