// Small output helpers shared by the subcommands: fixed-point numbers without Foundation, and flushing stdout.
import Glibc
import ZeroCopyText

enum Output {
    /// `value` with `digits` decimals.
    static func fixed(_ value: Double, _ digits: Int = 1) -> String { Text.fixed(value, digits) }

    /// One line on stdout, flushed at once (so it is seen before whatever the command does next).
    static func line(_ text: String) {
        print(text)
        fflush(nil)
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
}
