// A JSON value with ordered object keys and its text form, so the report's fields come out in the documented order
// and unknown figures come out as null (never dropped). Writing only; it never parses.
import ZeroCopyText

enum JSONValue {
    case null
    case bool(Bool)
    case int(Int)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    static func of(_ v: Int?) -> JSONValue { v.map { .int($0) } ?? .null }
    static func of(_ v: UInt64?) -> JSONValue { v.map { .uint($0) } ?? .null }
    static func of(_ v: Double?) -> JSONValue { v.map { .double($0) } ?? .null }
    static func of(_ v: String?) -> JSONValue { v.map { .string($0) } ?? .null }
    static func of(_ v: Bool?) -> JSONValue { v.map { .bool($0) } ?? .null }

    /// Pretty-printed with two-space indentation; arrays of scalars-only objects stay one object per line.
    func render() -> String {
        var out = ""
        write(into: &out, indent: 0)
        out += "\n"
        return out
    }

    /// On one line, no spaces: the profiling endpoint's answers.
    func renderLine() -> String {
        var out = ""
        writeLine(into: &out)
        return out
    }

    private func writeLine(into out: inout String) {
        switch self {
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.writeLine(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out += "," }
                Self.quote(key, into: &out)
                out += ":"
                value.writeLine(into: &out)
            }
            out += "}"
        default: write(into: &out, indent: 0)
        }
    }

    private func write(into out: inout String, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .uint(let u): out += String(u)
        case .double(let d): out += Self.number(d)
        case .string(let s): Self.quote(s, into: &out)
        case .array(let items):
            if items.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (i, item) in items.enumerated() {
                out += i == 0 ? "\n" : ",\n"
                out += String(repeating: "  ", count: indent + 1)
                item.writeCompactIfFlat(into: &out, indent: indent + 1)
            }
            out += "\n" + String(repeating: "  ", count: indent) + "]"
        case .object(let members):
            if members.isEmpty {
                out += "{}"
                return
            }
            out += "{"
            for (i, (key, value)) in members.enumerated() {
                out += i == 0 ? "\n" : ",\n"
                out += String(repeating: "  ", count: indent + 1)
                Self.quote(key, into: &out)
                out += ": "
                value.write(into: &out, indent: indent + 1)
            }
            out += "\n" + String(repeating: "  ", count: indent) + "}"
        }
    }

    /// Objects whose members are all scalars go on one line (timeline samples, table rows).
    private func writeCompactIfFlat(into out: inout String, indent: Int) {
        guard case .object(let members) = self, members.allSatisfy({ $0.1.isScalar }) else {
            write(into: &out, indent: indent)
            return
        }
        out += "{"
        for (i, (key, value)) in members.enumerated() {
            if i > 0 { out += ", " }
            Self.quote(key, into: &out)
            out += ": "
            value.write(into: &out, indent: indent)
        }
        out += "}"
    }

    private var isScalar: Bool {
        switch self {
        case .array, .object: false
        default: true
        }
    }

    /// Shortest round-trip form; JSON has no infinity or NaN, so those are null.
    static func number(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }

    static func quote(_ s: String, into out: inout String) { Text.jsonQuote(s, into: &out) }
}
