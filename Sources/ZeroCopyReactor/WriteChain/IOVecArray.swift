// Per-loop scratch space for one gathered write: IOV_MAX iovec entries allocated once when the loop starts.
// Invariant: only the owning loop thread touches it, and only during one flush; nothing keeps a pointer into
// it across flushes.
import Glibc

final class IOVecArray {
    /// Linux's IOV_MAX (sysconf(_SC_IOV_MAX) is 1024 on every kernel we run on).
    static let limit = 1024
    /// The kernel takes at most this many bytes in one call (and BSDs fail with EINVAL past it).
    static let byteLimit = Int(Int32.max)
    /// At most this many slices go into one call, however few iovecs they make after coalescing: the same bound
    /// as without coalescing, so the walk that builds a call stays short when the kernel takes only part of it.
    static let sliceLimit = limit

    let entries: UnsafeMutableBufferPointer<iovec>

    init(capacity: Int = IOVecArray.limit) {
        precondition(capacity >= 1 && capacity <= Self.limit)
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: iovec())
    }

    deinit { entries.deallocate() }
}
