// A descriptor owned from the instant the syscall returns it: closed exactly once, in `close()` or in deinit.
// It is ~Copyable, so two owners of one descriptor cannot exist.
import Glibc

struct FileDescriptor: ~Copyable {
    let raw: Int32

    init(adopting raw: Int32) {
        self.raw = raw
    }

    /// Closes now. EINTR from close still released the descriptor on Linux, so it is not retried.
    consuming func close() {
        let fd = raw
        discard self
        FaultInjection.descriptorClosed(fd)
        _ = Glibc.close(fd)
    }

    deinit {
        FaultInjection.descriptorClosed(raw)
        _ = Glibc.close(raw)
    }
}
