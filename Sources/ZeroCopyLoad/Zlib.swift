// zlib's compress2/uncompress, looked up at run time in libz.so.1 (present on every Linux), because the HdrHistogram
// log format deflates each histogram. Nothing links zlib at build time; if it is missing, the log is unavailable
// and says so (never a silent fallback to another format).
import Glibc

enum Zlib {
    private typealias Compress2 =
        @convention(c) (
            UnsafeMutablePointer<UInt8>, UnsafeMutablePointer<UInt>, UnsafePointer<UInt8>, UInt, Int32
        ) -> Int32
    private typealias Uncompress =
        @convention(c) (
            UnsafeMutablePointer<UInt8>, UnsafeMutablePointer<UInt>, UnsafePointer<UInt8>, UInt
        ) -> Int32
    private typealias Bound = @convention(c) (UInt) -> UInt

    private struct Functions: @unchecked Sendable {
        let compress2: Compress2
        let uncompress: Uncompress
        let bound: Bound
    }

    private static let functions: Functions? = {
        guard let lib = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL),
            let c = dlsym(lib, "compress2"), let u = dlsym(lib, "uncompress"), let b = dlsym(lib, "compressBound")
        else { return nil }
        return Functions(
            compress2: unsafeBitCast(c, to: Compress2.self), uncompress: unsafeBitCast(u, to: Uncompress.self),
            bound: unsafeBitCast(b, to: Bound.self))
    }()

    private static let zBufError: Int32 = -5

    static func compress(_ input: [UInt8]) throws(LoadError) -> [UInt8] {
        guard let z = functions else {
            throw LoadError("zlib (libz.so.1) is not available: cannot write HdrHistogram logs")
        }
        var capacity = z.bound(UInt(input.count))
        var out = [UInt8](repeating: 0, count: Int(capacity))
        let rc = out.withUnsafeMutableBufferPointer { o in
            input.withUnsafeBufferPointer { i in
                z.compress2(o.baseAddress!, &capacity, i.baseAddress!, UInt(i.count), 6)
            }
        }
        guard rc == 0 else { throw LoadError("zlib compress2 failed (\(rc))") }
        out.removeLast(out.count - Int(capacity))
        return out
    }

    /// Inflates a zlib stream whose size is unknown, growing the output up to `limit` bytes.
    static func uncompress(_ input: ArraySlice<UInt8>, limit: Int = 256 << 20) throws(LoadError) -> [UInt8] {
        guard let z = functions else {
            throw LoadError("zlib (libz.so.1) is not available: cannot read HdrHistogram logs")
        }
        var size = Swift.max(4096, input.count * 8)
        while true {
            var length = UInt(size)
            var out = [UInt8](repeating: 0, count: size)
            let rc = out.withUnsafeMutableBufferPointer { o in
                input.withUnsafeBufferPointer { i in
                    z.uncompress(o.baseAddress!, &length, i.baseAddress!, UInt(i.count))
                }
            }
            if rc == 0 {
                out.removeLast(out.count - Int(length))
                return out
            }
            guard rc == zBufError, size < limit else { throw LoadError("corrupt compressed histogram (zlib \(rc))") }
            size *= 4
        }
    }
}
