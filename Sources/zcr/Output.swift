// Small output helpers shared by the subcommands: fixed-point numbers without Foundation, and flushing stdout.
// Output never fails a command: with SIGPIPE ignored (zcr serve does), a write to a closed stdout (`| head -1`)
// fails with EPIPE, which is dropped here, and the command's exit status does not change.
import Glibc
import ZeroCopyLoad
import ZeroCopyText

enum Output {
    /// `value` with `digits` decimals.
    static func fixed(_ value: Double, _ digits: Int = 1) -> String { Text.fixed(value, digits) }

    /// One line on stdout, flushed at once (so it is seen before whatever the command does next).
    static func line(_ text: String) {
        print(text)
        fflush(nil)  // a failed write (EPIPE) is dropped; later lines are tried again and dropped the same way
    }

    /// One line on stderr (unbuffered): how a command reports a failure before it exits non-zero.
    static func error(_ text: String) {
        let bytes = Array((text + "\n").utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }  // stderr is gone too: nothing is left to tell
            off += n
        }
    }

    /// Why `path` cannot be written, checked before a run (opened for appending, so nothing is lost), or nil.
    static func unwritable(_ path: String) -> String? {
        guard let f = fopen(path, "a") else { return String(cString: strerror(errno)) }
        fclose(f)
        return nil
    }

    /// Writes `text` to `path`; returns what went wrong, or nil.
    static func write(_ text: String, to path: String) -> String? {
        do { try FileIO.write(text, to: path) } catch { return "\(error)" }
        return nil
    }
}
