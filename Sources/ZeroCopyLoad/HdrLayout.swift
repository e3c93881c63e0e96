// HdrHistogram's bucket arithmetic (the same in every implementation) and its ZigZag LEB128 integers: what the V2
// encoding needs to turn counts into bytes and back. Pure functions; nothing here allocates or stores state.

/// HdrHistogram's bucket layout (the same arithmetic as every implementation): index of a value and value at an index.
struct HdrLayout: Equatable {
    let unitMagnitude: Int
    let subBucketHalfCountMagnitude: Int
    let subBucketHalfCount: Int
    let subBucketMask: UInt64
    let leadingZeroCountBase: Int

    init(lowestDiscernibleValue: UInt64, significantDigits: Int) {
        var largest: UInt64 = 2
        for _ in 0..<significantDigits { largest *= 10 }
        unitMagnitude = 63 - lowestDiscernibleValue.leadingZeroBitCount  // floor(log2)
        let subBucketCountMagnitude = 64 - (largest - 1).leadingZeroBitCount  // ceil(log2)
        subBucketHalfCountMagnitude = Swift.max(subBucketCountMagnitude, 1) - 1
        subBucketHalfCount = 1 << subBucketHalfCountMagnitude
        subBucketMask = UInt64((1 << subBucketCountMagnitude) - 1) << UInt64(unitMagnitude)
        leadingZeroCountBase = 64 - unitMagnitude - subBucketCountMagnitude
    }

    /// HdrHistogram's own limit: `lowest * 2 * 10^digits` must be representable (unit + half-count magnitudes
    /// at most 61), else the bucket arithmetic overflows.
    static func fits(lowestDiscernibleValue: UInt64, significantDigits: Int) -> Bool {
        guard lowestDiscernibleValue >= 1, (0...5).contains(significantDigits) else { return false }
        let l = HdrLayout(lowestDiscernibleValue: lowestDiscernibleValue, significantDigits: significantDigits)
        return l.unitMagnitude + l.subBucketHalfCountMagnitude <= 61
    }

    /// The length of the counts array of a histogram with this layout that tracks up to `highest` (as every
    /// implementation sizes it: whole buckets, so it may hold values a little above `highest`).
    func countsLength(highestTrackableValue highest: UInt64) -> Int {
        var smallestUntrackable = UInt64(2 * subBucketHalfCount) << UInt64(unitMagnitude)
        var buckets = 1
        while smallestUntrackable <= highest {
            if smallestUntrackable > UInt64.max / 2 {
                buckets += 1
                break
            }
            smallestUntrackable <<= 1
            buckets += 1
        }
        return (buckets + 1) * subBucketHalfCount
    }

    func index(of value: UInt64) -> Int {
        let bucket = leadingZeroCountBase - (value | subBucketMask).leadingZeroBitCount
        let subBucket = Int(value >> UInt64(bucket + unitMagnitude))
        return (bucket + 1) << subBucketHalfCountMagnitude + (subBucket - subBucketHalfCount)
    }

    /// The lowest value of the bucket at `index`.
    func value(at index: Int) -> UInt64 {
        var bucket = (index >> subBucketHalfCountMagnitude) - 1
        var subBucket = (index & (subBucketHalfCount - 1)) + subBucketHalfCount
        if bucket < 0 {
            subBucket -= subBucketHalfCount
            bucket = 0
        }
        return UInt64(subBucket) << UInt64(bucket + unitMagnitude)
    }
}

/// ZigZag LEB128 as HdrHistogram writes it: at most 9 bytes, the ninth carrying 8 bits.
enum ZigZag {
    static func put(_ value: Int64, into out: inout [UInt8]) {
        var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        for _ in 0..<8 {
            if v >> 7 == 0 {
                out.append(UInt8(v))
                return
            }
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(truncatingIfNeeded: v))
    }

    static func get(_ b: [UInt8], _ cursor: inout Int, end: Int) -> Int64? {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard cursor < end else { return nil }
            let byte = b[cursor]
            cursor += 1
            if shift == 56 {
                v |= UInt64(byte) << 56
                break
            }
            v |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        return Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1)
    }
}
