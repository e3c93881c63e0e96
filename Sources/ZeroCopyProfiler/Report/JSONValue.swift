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

    /// On one line, no spaces: the profiling endpoint's answers. Written as bytes (the endpoint writes one per
    /// snapshot); strings that need no escaping are copied as they are.
    func renderLine() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        writeLine(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private func writeLine(into out: inout [UInt8]) {
        switch self {
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.writeLine(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.quoteLine(key, into: &out)
                out.append(UInt8(ascii: ":"))
                value.writeLine(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .string(let s): Self.quoteLine(s, into: &out)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .uint(let u): out.append(contentsOf: String(u).utf8)
        default:
            var text = ""
            write(into: &text, indent: 0)
            out.append(contentsOf: text.utf8)
        }
    }

    private static func quoteLine(_ s: String, into out: inout [UInt8]) {
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) {
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: s.utf8)
            out.append(UInt8(ascii: "\""))
        } else {
            var text = ""
            quote(s, into: &text)
            out.append(contentsOf: text.utf8)
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
