// Small output helpers shared by the subcommands: fixed-point numbers without Foundation, and flushing stdout.
import Glibc
import ZeroCopyText

enum Output {
    /// `value` with `digits` decimals.
    static func fixed(_ value: Double, _ digits: Int = 1) -> String { Text.fixed(value, digits) }

    static func line(_ text: String) {
        print(text)
        fflush(nil)
    }
}
