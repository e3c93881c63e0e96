// The one payload buffer every message of a run is cut from, and the expected-byte function the verifier uses.
// Messages are slices of this buffer (never copies); it must never change after init, since slices of it may be
// queued on any connection until the pool releases them.
import Glibc
import ZeroCopyReactor

/// Owns the bytes all messages borrow. Connection streams are the buffer's period repeated, starting at a
/// per-connection `shift`: byte i of a stream is `storage[(i + shift) % period]`, so message k starts at offset
/// `(k * M + shift) % period` of a buffer of `M + period` bytes.
/// - `blast` (`i % 251`, what `zcr serve --mode blast` sends): period 251, shift 0 for every connection.
/// - `distinct` (echo, request, sink): a fixed pseudo-random period of 65,521 bytes (prime), and each connection its
///   own shift (`shift(connection:)`), so bytes delivered to the wrong connection are wrong bytes; a lost, repeated
///   or reordered message shows up unless M is a multiple of the period.
/// With a payload file, every message is the file and the stream is the file repeated (shift 0).
final class MessagePayload: @unchecked Sendable {
    let messageBytes: Int
    /// The stream repeats with this period: `expected(offset) == storage[offset % period]`.
    let period: Int
    private let storage: UnsafeMutableRawBufferPointer

    /// The period of the distinct pattern (prime, so no message size below it divides it).
    static let distinctPeriod = 65_521
    /// Distinct shifts of consecutive connections are this far apart in the pattern.
    static let shiftStride = 4_099
    /// True when each connection has a stream of its own.
    let distinct: Bool

    /// The built-in pattern: `i % 251` (blast), or the distinct pseudo-random pattern.
    init(messageBytes: Int, distinct: Bool = false) {
        precondition(messageBytes >= 1)
        self.messageBytes = messageBytes
        self.distinct = distinct
        period = distinct ? Self.distinctPeriod : BlastPayload.period
        storage = .allocate(byteCount: messageBytes + period, alignment: 64)
        if distinct {
            var state: UInt64 = 0x5a43_525f_4c4f_4144  // fixed seed: every run, every machine, the same bytes
            for i in 0..<period {
                // splitmix64
                state &+= 0x9e37_79b9_7f4a_7c15
                var z = state
                z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
                z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
                storage[i] = UInt8(truncatingIfNeeded: z ^ (z >> 31))
            }
            for i in period..<storage.count { storage[i] = storage[i - period] }
        } else {
            for i in 0..<storage.count { storage[i] = UInt8(i % period) }
        }
    }

    /// Where connection `number` (0, 1, ... in connect order) starts in the pattern: distinct for the first 65,521
    /// connections when the pattern is distinct, else 0.
    func shift(connection number: Int) -> Int {
        distinct ? (number % period) * Self.shiftStride % period : 0
    }

    /// Every message is `bytes`.
    init(bytes: [UInt8]) {
        precondition(!bytes.isEmpty)
        messageBytes = bytes.count
        period = bytes.count
        distinct = false
        storage = .allocate(byteCount: bytes.count, alignment: 64)
        storage.copyBytes(from: bytes)
    }

    deinit { storage.deallocate() }

    /// Message `k` of the connection whose stream starts at `shift` (k counts from 0): a borrowed slice, no copy,
    /// no allocation.
    @inline(__always)
    func message(_ k: Int, shift: Int = 0) -> Slice {
        let start = period == messageBytes ? 0 : ((k % period) * (messageBytes % period) + shift) % period
        return Slice(unsafeBytes: UnsafeRawBufferPointer(rebasing: storage[start..<start + messageBytes]), owner: self)
    }

    /// Compares `bytes` with the expected stream at `offset`. Returns the index of the first wrong byte, or nil.
    func firstMismatch(_ bytes: UnsafeRawBufferPointer, streamOffset offset: Int) -> Int? {
        var done = 0
        while done < bytes.count {
            let start = (offset + done) % period
            let n = min(bytes.count - done, storage.count - start)
            if memcmp(bytes.baseAddress! + done, storage.baseAddress! + start, n) != 0 {
                for i in 0..<n where bytes[done + i] != storage[start + i] { return done + i }
            }
            done += n
        }
        return nil
    }

    /// The byte expected at stream `offset`.
    func expected(at offset: Int) -> UInt8 { storage[offset % period] }
}
