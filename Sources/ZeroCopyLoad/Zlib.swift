// zlib's compress2/uncompress (linked as a system library, CZlib), because the HdrHistogram log format deflates
// each histogram. Errors are one line; a stream that inflates past `limit` is refused, never followed.
import CZlib

enum Zlib {
    static func compress(_ input: [UInt8]) throws(LoadError) -> [UInt8] {
        var capacity = compressBound(uLong(input.count))
        var out = [UInt8](repeating: 0, count: Int(capacity))
        let rc = out.withUnsafeMutableBufferPointer { o in
            input.withUnsafeBufferPointer { i in
                compress2(o.baseAddress!, &capacity, i.baseAddress!, uLong(i.count), 6)
            }
        }
        guard rc == Z_OK else { throw LoadError("zlib compress2 failed (\(rc))") }
        out.removeLast(out.count - Int(capacity))
        return out
    }

    /// Inflates a zlib stream whose size is unknown, growing the output up to `limit` bytes.
    static func uncompress(_ input: ArraySlice<UInt8>, limit: Int = 256 << 20) throws(LoadError) -> [UInt8] {
        guard !input.isEmpty else { throw LoadError("corrupt compressed histogram (empty)") }
        var size = Swift.max(4096, input.count * 8)
        while true {
            var length = uLongf(size)
            var out = [UInt8](repeating: 0, count: size)
            let rc = out.withUnsafeMutableBufferPointer { o in
                input.withUnsafeBufferPointer { i in
                    CZlib.uncompress(o.baseAddress!, &length, i.baseAddress!, uLong(i.count))
                }
            }
            if rc == Z_OK {
                out.removeLast(out.count - Int(length))
                return out
            }
            guard rc == Z_BUF_ERROR, size < limit else { throw LoadError("corrupt compressed histogram (zlib \(rc))") }
            size *= 4
        }
    }
}
