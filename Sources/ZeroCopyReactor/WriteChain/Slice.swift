// A borrowed slice: a pointer, a length and the owner that keeps the bytes alive until the library releases
// them. Creating a Slice never copies the bytes. The borrowing contract, in plain words:
//   from `write` until `sliceReleased`, the bytes must not change and must stay where they are.
// Arrays and array slices are retained, not copied: a later mutation by the caller makes the caller's own
// copy (copy-on-write), so what is on the wire cannot change.
import FoundationEssentials

/// Told about a slice's two events. Both are called on the connection's loop thread (or, for a write that
/// was refused, on the writing thread, before `write` throws).
public protocol SliceObserver: AnyObject, Sendable {
    /// The kernel accepted all of the slice's bytes.
    func sliceWritten(tag: UInt64, byteCount: Int)
    /// The library will never touch the slice's memory again. `error` is nil after a successful write.
    /// Called exactly once per written slice, on every path.
    func sliceReleased(tag: UInt64, error: ReactorError?)
}

extension SliceObserver {
    public func sliceWritten(tag: UInt64, byteCount: Int) {}
}

/// What keeps a slice's bytes alive. Holding it is a strong reference; dropping it is the release.
enum SliceKeepalive: @unchecked Sendable {
    case none
    case object(AnyObject)
    case array([UInt8])
    case arraySlice(ArraySlice<UInt8>)
    case data(Data)
    case string(String)
    /// A copy `Connection.writeCopying` made of the caller's bytes (freed on release); it remembers the caller's
    /// memory, which verify mode checks iovecs against.
    case copy(CopiedBytes)
    /// The few bytes of a small Data or String value, copied into an array (counted as copied when written).
    case inlineCopy([UInt8])
    /// A region of an open file, sent with sendfile: the slice has no bytes in memory.
    case file(FileRegionRef)
}

/// Bytes handed to a connection without copying. See the borrowing contract above.
///
/// Layout: a slice is copied into its chain node once per write, so it is kept small (73 bytes on 64-bit, the
/// largest keepalive being an ArraySlice: everything rare, such as a copying path's bookkeeping, lives inside the
/// keepalive) and the keepalive, whose tag is a single byte, comes last.
public struct Slice: @unchecked Sendable {
    /// The bytes that will be sent. Empty for a file region, whose bytes stay in the file (see `count`).
    public let bytes: UnsafeRawBufferPointer
    /// A value of the caller's, passed back in `SliceObserver` events.
    public var tag: UInt64 = 0
    /// Told when the slice is written and released.
    public var observer: (any SliceObserver)?
    let keepalive: SliceKeepalive

    init(bytes: UnsafeRawBufferPointer, keepalive: SliceKeepalive) {
        self.bytes = bytes
        self.keepalive = keepalive
    }

    /// The caller's memory: `bytes`, unless a copying path replaced them (verify mode reports iovecs outside it).
    var userBytes: UnsafeRawBufferPointer {
        if case .copy(let c) = keepalive { return c.user }
        return bytes
    }

    /// Bytes this slice copied when it was made (tiny inline values only); counted when it is written.
    var copiedBytes: Int {
        if case .inlineCopy(let a) = keepalive { return a.count }
        return 0
    }

    /// A slice over a new copy of `bytes`, which remembers them as the caller's memory (`Connection.writeCopying`).
    init(copyOf bytes: UnsafeRawBufferPointer) {
        let copy = CopiedBytes(copying: bytes)
        self.init(bytes: UnsafeRawBufferPointer(copy.copy), keepalive: .copy(copy))
    }

    /// The array's bytes, retained. Invariant: a native Swift array's elements stay at one address for as long
    /// as its storage is alive and not mutated; the slice holds the storage, and copy-on-write moves any
    /// mutation by the caller to a new storage.
    public init(_ array: [UInt8]) {
        let bytes = array.withUnsafeBytes { $0 }
        self.init(bytes: bytes, keepalive: .array(array))
    }

    /// The slice's bytes, retained (the same invariant as for arrays).
    public init(_ slice: ArraySlice<UInt8>) {
        let bytes = slice.withUnsafeBytes { $0 }
        self.init(bytes: bytes, keepalive: .arraySlice(slice))
    }

    /// Memory owned by `owner`: the library keeps `owner` alive until it releases the slice.
    /// The caller promises that `bytes` stays valid and unchanged while `owner` is alive and the slice is queued.
    public init(unsafeBytes bytes: UnsafeRawBufferPointer, owner: AnyObject) {
        self.init(bytes: bytes, keepalive: .object(owner))
    }

    /// Raw memory with a release callback (an mmap'd file, a pooled buffer). `release` runs exactly once,
    /// on whatever thread drops the last reference, after every write of this slice (and its sub-slices) is done.
    public init(unsafeBytes bytes: UnsafeRawBufferPointer, release: @escaping @Sendable (UnsafeRawBufferPointer) -> Void) {
        self.init(bytes: bytes, keepalive: .object(ReleaseOnDeinit(bytes: bytes, release: release)))
    }

    /// Memory the caller promises outlives every write (static data, a buffer it frees only after shutdown).
    public init(unsafeUnownedBytes bytes: UnsafeRawBufferPointer) {
        self.init(bytes: bytes, keepalive: .none)
    }

    /// A region of an open file (`OpenFile.region`): `bytes` is empty, and the loop sends it with sendfile.
    init(region: FileRegionRef) {
        self.init(bytes: UnsafeRawBufferPointer(start: nil, count: 0), keepalive: .file(region))
    }

    /// Bytes this slice sends: its memory's length, or its file region's.
    public var count: Int {
        if case .file(let region) = keepalive { return region.count }
        return bytes.count
    }

    /// True for a region of a file (sent with sendfile), false for memory.
    public var isFileRegion: Bool {
        if case .file = keepalive { return true }
        return false
    }

    /// The file region behind this slice, if it is one.
    var fileRegion: FileRegionRef? {
        if case .file(let region) = keepalive { return region }
        return nil
    }

    /// A zero-length slice is never queued (it would never drain), but it was handed over all the same: its observer
    /// hears that it was written (0 bytes) and released, at once, on the writing thread.
    consuming func releaseEmpty() {
        guard let observer else { return }
        observer.sliceWritten(tag: tag, byteCount: 0)
        observer.sliceReleased(tag: tag, error: nil)
    }

    /// Part of this slice, sharing its owner. No bytes are copied.
    public func slice(_ range: Range<Int>) -> Slice {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "slice \(range) out of 0..<\(count)")
        var s: Slice
        if let region = fileRegion {
            s = Slice(region: FileRegionRef(file: region.file, offset: region.offset + Int64(range.lowerBound), count: range.count))
        } else {
            s = Slice(bytes: UnsafeRawBufferPointer(rebasing: bytes[range]), keepalive: keepalive)
        }
        s.tag = tag
        s.observer = observer
        return s
    }
}

/// A copy of a caller's bytes, freed when the last slice of it is released.
final class CopiedBytes: @unchecked Sendable {
    let copy: UnsafeMutableRawBufferPointer
    let user: UnsafeRawBufferPointer

    init(copying bytes: UnsafeRawBufferPointer) {
        copy = .allocate(byteCount: bytes.count, alignment: 16)
        copy.copyMemory(from: bytes)
        user = bytes
    }

    deinit { copy.deallocate() }
}

/// Runs a release callback when the last reference goes away: exactly once by construction.
final class ReleaseOnDeinit: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    let release: @Sendable (UnsafeRawBufferPointer) -> Void

    init(bytes: UnsafeRawBufferPointer, release: @escaping @Sendable (UnsafeRawBufferPointer) -> Void) {
        self.bytes = bytes
        self.release = release
    }

    deinit { release(bytes) }
}
