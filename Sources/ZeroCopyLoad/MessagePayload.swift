// The one payload buffer every message of a run is cut from, and the expected-byte function the verifier uses.
// Messages are slices of this buffer (never copies); it must never change after init, since slices of it may be
// queued on any connection until the pool releases them.
import Glibc
import ZeroCopyReactor

/// Owns the bytes all messages borrow. With the built-in pattern, byte i of every connection's stream is
/// `i % 251` (as `zcr serve --mode blast` sends), so message k starts at offset `k * M % 251` of a buffer of
/// `M + 251` bytes; a lost, repeated or reordered message shows up as wrong bytes unless M is a multiple of 251.
/// With a payload file, every message is the file and the stream is the file repeated.
final class MessagePayload: @unchecked Sendable {
    let messageBytes: Int
    /// The stream repeats with this period: `expected(offset) == storage[offset % period]`.
    let period: Int
    private let storage: UnsafeMutableRawBufferPointer

    /// The built-in pattern.
    init(messageBytes: Int) {
        precondition(messageBytes >= 1)
        self.messageBytes = messageBytes
        period = BlastPayload.period
        storage = .allocate(byteCount: messageBytes + period, alignment: 64)
        for i in 0..<storage.count { storage[i] = UInt8(i % period) }
    }

    /// Every message is `bytes`.
    init(bytes: [UInt8]) {
        precondition(!bytes.isEmpty)
        messageBytes = bytes.count
        period = bytes.count
        storage = .allocate(byteCount: bytes.count, alignment: 64)
        storage.copyBytes(from: bytes)
    }

    deinit { storage.deallocate() }

    /// Message `k` of a connection (k counts from 0): a borrowed slice, no copy, no allocation.
    @inline(__always)
    func message(_ k: Int) -> Slice {
        let start = period == messageBytes ? 0 : (k % period) * (messageBytes % period) % period
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
