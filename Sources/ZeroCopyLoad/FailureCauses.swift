// Names for why a connect failed and why an established connection ended: short, stable keys for the JSON
// (`connect_errors`, `errors`) and the summary. Classification only; nothing here counts or prints.
import Glibc
import ZeroCopyReactor

enum FailureCauses {
    /// Why a connection attempt failed: "refused", "timeout", "EMFILE", ...
    static func connect(_ error: ReactorError?) -> String {
        switch error {
        case .connectTimeout: return "timeout"
        case .system(let e): return name(errno: e.errno)
        case .poolShutdown: return "shutdown"
        case .invalidArgument: return "invalid_argument"
        case nil, .connectionClosed, .aborted: return "closed"
        case .writeBufferFull: return "write_buffer_full"
        case .idleTimeout: return "idle_timeout"
        case .writeStalled: return "write_stalled"
        case .closeTimeout: return "close_timeout"
        case .concurrentConsumers: return "concurrent_consumers"
        case .frameTooLarge: return "frame_too_large"
        case .truncatedFrame: return "truncated_frame"
        case .fileTruncated: return "file_truncated"
        }
    }

    /// Why an established connection ended before the generator closed it.
    static func run(_ error: ReactorError?) -> String {
        switch error {
        case nil: return "closed_by_peer"
        case .system(let e): return name(errno: e.errno)
        case .aborted: return "aborted"
        default: return connect(error)
        }
    }

    static func name(errno code: Int32) -> String {
        switch code {
        case ECONNREFUSED: return "refused"
        case ETIMEDOUT: return "timeout"
        case ECONNRESET: return "reset"
        case EPIPE: return "broken_pipe"
        case ECONNABORTED: return "aborted"
        case ENETUNREACH, EHOSTUNREACH: return "unreachable"
        case EMFILE: return "EMFILE"
        case ENFILE: return "ENFILE"
        case EADDRNOTAVAIL: return "EADDRNOTAVAIL"
        case EADDRINUSE: return "EADDRINUSE"
        case ENOBUFS: return "ENOBUFS"
        case ENOMEM: return "ENOMEM"
        case EACCES, EPERM: return "permission"
        default: return "errno_\(code)"
        }
    }

    /// What a cause means, for the line that explains a partial run.
    static func explain(_ cause: String) -> String {
        switch cause {
        case "refused": return "refused (nothing listens there, or its backlog overflowed)"
        case "timeout": return "timed out"
        case "EMFILE": return "EMFILE (this process is out of descriptors)"
        case "ENFILE": return "ENFILE (the system is out of descriptors)"
        case "EADDRNOTAVAIL": return "EADDRNOTAVAIL (out of local ports)"
        case "unreachable": return "unreachable"
        default: return cause
        }
    }
}
