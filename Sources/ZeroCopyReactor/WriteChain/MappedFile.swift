// A file mapped read-only into memory: slices of it are sent straight from the page cache, never read into the
// heap. Invariant: the mapping stays valid until the last slice holding this object is released (deinit unmaps).
// The file must not be truncated while mapped (reading a truncated page raises SIGBUS); shrinking files need sendfile.
import Glibc

public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer

    /// Maps the whole file. Empty files map to an empty buffer.
    public init(path: String) throws(ReactorError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(SystemError(errno: errno, call: "open")) }
        defer { Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .system(SystemError(errno: errno, call: "fstat")) }
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw .system(SystemError(errno: errno, call: "mmap"))
        }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }

    public var count: Int { bytes.count }

    /// Bytes `range` of the file as a slice that keeps the mapping alive.
    public func slice(_ range: Range<Int>? = nil) -> Slice {
        let r = range ?? 0..<bytes.count
        precondition(r.lowerBound >= 0 && r.upperBound <= bytes.count, "range \(r) outside the file's \(bytes.count) bytes")
        return Slice(unsafeBytes: UnsafeRawBufferPointer(rebasing: bytes[r]), owner: self)
    }
}
