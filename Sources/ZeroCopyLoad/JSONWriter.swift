// A tiny JSON writer that keeps keys in the order written, so the report's field order is stable and documented.
// Builds a String; never reads JSON and never touches files.
import ZeroCopyText

struct JSONWriter {
    private(set) var text = ""
    private var needsComma = [false]
    private let indentUnit = "  "

    mutating func beginObject(_ key: String? = nil) {
        prefix(key)
        text += "{"
        needsComma.append(false)
    }

    mutating func endObject() {
        let hadMembers = needsComma.removeLast()
        if hadMembers { newline() }
        text += "}"
    }

    mutating func beginArray(_ key: String) {
        prefix(key)
        text += "["
        needsComma.append(false)
    }

    mutating func endArray() {
        let hadMembers = needsComma.removeLast()
        if hadMembers { newline() }
        text += "]"
    }

    mutating func value(_ key: String?, _ string: String?) {
        prefix(key)
        text += string.map(Self.quoted) ?? "null"
    }

    mutating func value(_ key: String?, _ int: Int?) {
        prefix(key)
        text += int.map { String($0) } ?? "null"
    }

    mutating func value(_ key: String?, _ uint: UInt64?) {
        prefix(key)
        text += uint.map { String($0) } ?? "null"
    }

    mutating func value(_ key: String?, _ bool: Bool) {
        prefix(key)
        text += bool ? "true" : "false"
    }

    /// Rounded to `digits` decimals; non-finite numbers are null.
    mutating func value(_ key: String?, _ double: Double?, digits: Int = 3) {
        prefix(key)
        guard let d = double, d.isFinite else {
            text += "null"
            return
        }
        text += Format.fixed(d, digits)
    }

    mutating func null(_ key: String) {
        prefix(key)
        text += "null"
    }

    /// An object of counts with keys sorted (stable output).
    mutating func counts(_ key: String, _ dictionary: [String: Int]) {
        beginObject(key)
        for k in dictionary.keys.sorted() { value(k, dictionary[k]!) }
        endObject()
    }

    private mutating func prefix(_ key: String?) {
        if needsComma[needsComma.count - 1] { text += "," }
        if needsComma.count > 1 { newline() }
        needsComma[needsComma.count - 1] = true
        if let key { text += Self.quoted(key) + ": " }
    }

    private mutating func newline() {
        text += "\n" + String(repeating: indentUnit, count: needsComma.count - 1)
    }

    static func quoted(_ s: String) -> String { Text.jsonQuoted(s) }
}
