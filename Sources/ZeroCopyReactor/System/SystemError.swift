// Errors of the syscall layer and of the library. A SystemError carries errno and the call that failed;
// ReactorError is what users match on. Nothing here performs I/O.
import Glibc

/// A failed system call: `errno` and the call's name, as the kernel reported them.
public struct SystemError: Error, Hashable, Sendable, CustomStringConvertible {
    public let errno: Int32
    public let call: String

    public init(errno: Int32, call: String) {
        self.errno = errno
        self.call = call
    }

    public var description: String {
        let text = strerror(errno).map { String(cString: $0) } ?? "errno \(errno)"
        return "\(call): \(text) (errno \(errno))"
    }

    /// The peer went away: EPIPE, ECONNRESET, ECONNABORTED or ETIMEDOUT.
    public var isConnectionLoss: Bool {
        [EPIPE, ECONNRESET, ECONNABORTED, ETIMEDOUT].contains(errno)
    }
}

/// Everything the library reports to its users. Slices handed over with a write that fails are released
/// with one of these, exactly once.
public enum ReactorError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A system call failed.
    case system(SystemError)
    /// The connection is closed or closing; the write was not queued.
    case connectionClosed
    /// The connection was aborted by the application (queued slices are released with this error).
    case aborted
    /// The write would have pushed the pending bytes over the connection's hard cap.
    case writeBufferFull(pending: Int, cap: Int)
    /// The pool is shutting down or has shut down.
    case poolShutdown
    /// A client connection did not complete in time.
    case connectTimeout
    /// An argument was out of range; the text says which and why.
    case invalidArgument(String)
    /// Nothing was read or written for the connection's idle timeout; it was closed.
    case idleTimeout
    /// Bytes were pending and the kernel took none of them for the write-stall timeout; it was aborted (reset).
    case writeStalled
    /// A graceful close did not finish within the close deadline; it was aborted (reset).
    case closeTimeout
    /// A second task iterated an inbound sequence while another was waiting on it: one consumer at a time.
    case concurrentConsumers
    /// A frame (``FrameReader``) was longer than its reader's `maxFrameBytes`: `size` is its announced length, or
    /// for a line the bytes already received without a delimiter. A connection's reader aborts the connection.
    case frameTooLarge(size: Int, limit: Int)
    /// The input ended inside a frame (``FrameReader``): `bytes` of it had arrived (a length prefix included).
    case truncatedFrame(bytes: Int)
    /// A file region could not be sent whole: the file ended at `offset`, before the region's end at `expected`
    /// (it was truncated after the region was queued). The connection is reset: the peer must not take the short
    /// reply for a complete one.
    case fileTruncated(path: String?, offset: Int, expected: Int)

    public var description: String {
        switch self {
        case .system(let e): return e.description
        case .connectionClosed: return "connection closed"
        case .aborted: return "connection aborted"
        case .writeBufferFull(let pending, let cap):
            return "write buffer full: \(pending) bytes pending, hard cap \(cap)"
        case .poolShutdown: return "reactor pool is shut down"
        case .connectTimeout: return "connect timed out"
        case .invalidArgument(let why): return "invalid argument: \(why)"
        case .idleTimeout: return "idle timeout: nothing read or written"
        case .writeStalled: return "write stalled: the peer took no bytes for the write-stall timeout"
        case .closeTimeout: return "close timed out: the graceful close did not finish by its deadline"
        case .concurrentConsumers: return "an inbound sequence has one consumer at a time"
        case .frameTooLarge(let size, let limit): return "frame too large: \(size) bytes, limit \(limit)"
        case .truncatedFrame(let bytes): return "input ended inside a frame, after \(bytes) bytes of it"
        case .fileTruncated(let path, let offset, let expected):
            return "file \(path ?? "(descriptor)") ended at byte \(offset), before the region's end at \(expected)"
        }
    }

    /// The errno behind a system error, if any.
    public var errno: Int32? {
        if case .system(let e) = self { return e.errno }
        return nil
    }
}
