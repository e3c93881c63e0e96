// HdrHistogram's V2 binary form, compressed and base64-encoded as in every .hlog file: big-endian header, counts
// as ZigZag LEB128 with runs of zeros, deflated. hdrhistogram-swift 0.2 has no encoder, so this is written from
// the format; it never changes a histogram it encodes and rejects (never guesses at) forms it does not know.
import FoundationEssentials
import Histogram

enum HdrEncoding {
    static let v2Cookie: UInt32 = 0x1c84_9303 | 0x10
    static let v2CompressedCookie: UInt32 = 0x1c84_9304 | 0x10
    static let headerBytes = 40

    /// A decoded histogram as it was recorded: its own layout, and counts by index.
    struct Decoded {
        var layout: HdrLayout
        var highestTrackableValue: UInt64
        var counts: [(index: Int, count: UInt64)]

        /// Adds every count into `h` at its bucket's lowest value (what HdrHistogram's add does across layouts).
        func add(into h: inout Histogram<UInt64>) {
            for (i, c) in counts { h.record(layout.value(at: i), count: c) }
        }

        /// At most 2^63 - 1 (checked when decoding).
        var totalCount: UInt64 { counts.reduce(0) { $0 &+ $1.count } }
    }

    /// The compressed V2 form of `h`, base64.
    static func encode(_ h: Histogram<UInt64>) throws(LoadError) -> String {
        let layout = HdrLayout(
            lowestDiscernibleValue: h.lowestDiscernibleValue,
            significantDigits: Int(h.numberOfSignificantValueDigits.rawValue))
        var counts: [(Int, UInt64)] = []
        for v in h.recordedValues() { counts.append((layout.index(of: v.value), v.count)) }
        var payload: [UInt8] = []
        var next = 0
        for (index, count) in counts {
            let zeros = index - next
            if zeros == 1 {
                ZigZag.put(0, into: &payload)
            } else if zeros > 1 {
                ZigZag.put(-Int64(zeros), into: &payload)
            }
            ZigZag.put(Int64(count), into: &payload)
            next = index + 1
        }
        var plain: [UInt8] = []
        plain.reserveCapacity(headerBytes + payload.count)
        put32(v2Cookie, &plain)
        put32(UInt32(payload.count), &plain)
        put32(0, &plain)  // normalizing index offset
        put32(UInt32(h.numberOfSignificantValueDigits.rawValue), &plain)
        put64(h.lowestDiscernibleValue, &plain)
        put64(h.highestTrackableValue, &plain)
        put64((1.0).bitPattern, &plain)  // integer-to-double conversion ratio
        plain += payload
        return try encode(plain: plain)
    }

    /// The uncompressed V2 form `plain` (header and counts), deflated, wrapped and base64-encoded.
    static func encode(plain: [UInt8]) throws(LoadError) -> String {
        let deflated = try Zlib.compress(plain)
        var out: [UInt8] = []
        put32(v2CompressedCookie, &out)
        put32(UInt32(deflated.count), &out)
        return Data(out + deflated).base64EncodedString()
    }

    static func decode(base64 text: Substring) throws(LoadError) -> Decoded {
        guard let data = Data(base64Encoded: String(text)), data.count >= 8 else {
            throw LoadError("histogram is not valid base64")
        }
        let bytes = [UInt8](data)
        let cookie = get32(bytes, 0)
        guard cookie & ~0xf0 == 0x1c84_9304 else {
            throw LoadError(
                "unsupported histogram encoding (cookie 0x\(String(cookie, radix: 16)); only V2 compressed)")
        }
        let length = Int(get32(bytes, 4))
        guard length <= bytes.count - 8 else { throw LoadError("truncated compressed histogram") }
        let plain = try Zlib.uncompress(bytes[8..<8 + length])
        guard plain.count >= headerBytes, get32(plain, 0) & ~0xf0 == 0x1c84_9303 else {
            throw LoadError("unsupported histogram encoding inside the compressed block (only V2)")
        }
        let payloadLength = Int(get32(plain, 4))
        let normalizing = get32(plain, 8)
        let digits = Int(get32(plain, 12))
        let lowest = get64(plain, 16)
        let highest = get64(plain, 24)
        guard normalizing == 0 else { throw LoadError("histograms with a normalizing index offset are not supported") }
        guard (0...5).contains(digits), lowest >= 1, highest / 2 >= lowest,
            HdrLayout.fits(lowestDiscernibleValue: lowest, significantDigits: digits)
        else {
            throw LoadError("histogram header out of range (digits \(digits), lowest \(lowest), highest \(highest))")
        }
        guard payloadLength <= plain.count - headerBytes else { throw LoadError("truncated histogram payload") }
        let layout = HdrLayout(lowestDiscernibleValue: lowest, significantDigits: digits)
        // Counts past the bucket of `highest` would decode to values the header says cannot occur.
        let lastIndex = layout.countsLength(highestTrackableValue: highest) - 1
        var total: UInt64 = 0
        var counts: [(index: Int, count: UInt64)] = []
        var cursor = headerBytes
        let end = headerBytes + payloadLength
        var index = 0
        while cursor < end {
            guard let v = ZigZag.get(plain, &cursor, end: end) else { throw LoadError("corrupt histogram counts") }
            if v < 0 {
                guard v > -(1 << 40) else { throw LoadError("corrupt histogram counts") }
                index += Int(-v)
            } else {
                if v > 0 {
                    guard index <= lastIndex else {
                        throw LoadError("corrupt histogram counts (a count beyond the highest trackable value)")
                    }
                    let (sum, overflow) = total.addingReportingOverflow(UInt64(v))
                    guard !overflow, sum <= UInt64(Int64.max) else {
                        throw LoadError("histogram counts overflow (more than 2^63 - 1 values)")
                    }
                    total = sum
                    counts.append((index, UInt64(v)))
                }
                index += 1
            }
        }
        return Decoded(layout: layout, highestTrackableValue: highest, counts: counts)
    }

    private static func put32(_ v: UInt32, _ out: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }

    private static func put64(_ v: UInt64, _ out: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }

    private static func get32(_ b: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(b[at + $1]) }
    }

    private static func get64(_ b: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(b[at + $1]) }
    }
}
