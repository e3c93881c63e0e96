// Where a loop reads: one buffer at a time, reused read after read. A handler that keeps bytes turns them into a
// Slice (`InboundBytes.retainedSlice()`), which holds the buffer; the loop then reads into the rest of the buffer,
// and once too little is left it moves on to a free buffer and retires this one until nobody holds it.
// Invariants: only the owning loop touches `used` and the pool; a buffer is reused only when the pool's reference
// is the only one (isKnownUniquelyReferenced), so memory held by a slice is never overwritten.

final class ReadBuffer: @unchecked Sendable {
    let storage: UnsafeMutableRawBufferPointer
    /// Bytes before this offset are held by slices; reads go after it (loop only).
    var used = 0

    init(capacity: Int) {
        storage = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { storage.deallocate() }
}

/// Bytes the loop just read. Valid only during the `didRead` callback; keep them with `retainedSlice()`.
public struct InboundBytes {
    /// The bytes read. Do not use the pointer after the callback returns.
    public let bytes: UnsafeRawBufferPointer
    let buffer: ReadBuffer
    let offset: Int

    public var count: Int { bytes.count }

    /// The bytes as a Slice that keeps the loop's buffer alive: write it to any connection without copying.
    /// Call it during the callback, on the loop thread.
    public func retainedSlice() -> Slice {
        buffer.used = max(buffer.used, offset + bytes.count)
        return Slice(bytes: bytes, keepalive: .object(buffer))
    }

    /// A part of the bytes as a Slice (see `retainedSlice()`).
    public func retainedSlice(_ range: Range<Int>) -> Slice {
        retainedSlice().slice(range)
    }
}

struct ReadBufferPool {
    let bufferSize: Int
    /// Reads smaller than this would waste syscalls: move to a fresh buffer when less is left.
    let minimumRead: Int
    private(set) var current: ReadBuffer
    /// Buffers still held by slices, oldest first.
    private var retired: [ReadBuffer] = []
    private(set) var buffersAllocated = 1

    init(bufferSize: Int) {
        self.bufferSize = bufferSize
        self.minimumRead = max(1, min(bufferSize / 4, 16 * 1024))
        current = ReadBuffer(capacity: bufferSize)
    }

    /// The region the next read goes into.
    mutating func nextRegion() -> (ReadBuffer, Int, UnsafeMutableRawBufferPointer) {
        if bufferSize - current.used < minimumRead { rotate() }
        let offset = current.used
        return (current, offset, UnsafeMutableRawBufferPointer(rebasing: current.storage[offset...]))
    }

    private mutating func rotate() {
        if isKnownUniquelyReferenced(&current) {
            current.used = 0
            return
        }
        retired.append(current)
        if isKnownUniquelyReferenced(&retired[0]) {
            current = retired.removeFirst()
            current.used = 0
        } else {
            current = ReadBuffer(capacity: bufferSize)
            buffersAllocated += 1
        }
    }
}
