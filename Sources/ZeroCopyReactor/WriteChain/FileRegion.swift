// File regions: slices whose bytes stay in a file and go to the socket with sendfile(2), from the page cache, with
// no user mapping (so no page faults on the loop, and no SIGBUS when the file shrinks: a short file is an error).
// Invariants: an `OpenFile` that owns its descriptor closes it when the last slice of it is released (deinit);
// one that borrows it never closes it, and its owner keeps it open until every slice of it is released. Every send
// names its offset (sendfile's offset argument), so the descriptor's own file position is never used or moved, and
// one open file can feed any number of connections on any loops at once.
import Glibc

/// An open regular file whose regions can be queued on connections like memory slices (`region(_:)`).
public final class OpenFile: @unchecked Sendable {
    public let descriptor: Int32
    /// Where it was opened from (for messages), when known.
    public let path: String?
    private let owned: Bool

    /// Opens `path` read-only; the descriptor is closed when this object and every slice of it are gone.
    public init(path: String) throws(ReactorError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(SystemError(errno: errno, call: "open")) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw .system(SystemError(errno: e, call: "fstat"))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            Glibc.close(fd)
            throw .invalidArgument("\(path) is not a regular file")
        }
        descriptor = fd
        self.path = path
        owned = true
    }

    /// A descriptor the caller keeps open (and unchanged) until every slice of it is released.
    public init(borrowing descriptor: Int32) {
        self.descriptor = descriptor
        path = nil
        owned = false
    }

    deinit { if owned { Glibc.close(descriptor) } }

    /// The file's size now (fstat).
    public func size() throws(ReactorError) -> Int {
        var st = stat()
        guard fstat(descriptor, &st) == 0 else { throw .system(SystemError(errno: errno, call: "fstat")) }
        return Int(st.st_size)
    }

    /// Asks the kernel to start reading `range` into the page cache (posix_fadvise WILLNEED), so that the loop's
    /// sendfile does not wait on the disk: sendfile of pages that are not cached blocks the loop thread while they
    /// are read. Returns at once; best effort.
    public func readAhead(_ range: Range<Int>? = nil) {
        let r = range ?? 0..<((try? size()) ?? 0)
        _ = posix_fadvise(descriptor, off_t(r.lowerBound), off_t(r.count), POSIX_FADV_WILLNEED)
    }

    /// Bytes `range` of the file (default: the whole file as it is now) as a slice. Nothing is read: the bytes are
    /// sent by the loop with sendfile when the slice reaches the head of the chain. A file that is shorter than the
    /// region by then ends the connection with `ReactorError.fileTruncated`.
    public func region(_ range: Range<Int>? = nil) throws(ReactorError) -> Slice {
        let r: Range<Int>
        if let range { r = range } else { r = 0..<(try size()) }
        guard r.lowerBound >= 0 else { throw .invalidArgument("file region \(r) starts before the file") }
        return Slice(region: FileRegionRef(file: self, offset: Int64(r.lowerBound), count: r.count))
    }
}

/// One region of an open file, kept alive by the slices over it (the keepalive of a file slice).
final class FileRegionRef: @unchecked Sendable {
    let file: OpenFile
    let offset: Int64
    let count: Int

    init(file: OpenFile, offset: Int64, count: Int) {
        self.file = file
        self.offset = offset
        self.count = count
    }
}
