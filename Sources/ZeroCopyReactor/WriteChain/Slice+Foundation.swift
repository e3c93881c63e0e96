// Slices from Foundation's Data and from String's UTF-8 bytes, retained, not copied.
// Both types can keep a few bytes inside the value itself (Data up to 14 bytes, String up to 15 UTF-8 bytes on
// 64-bit), where no stable address exists; those few bytes are copied into a small array, and the copy is counted
// in `LoopCounters.bytesCopied` when the slice is written. Larger values keep their heap storage alive instead.
public import FoundationEssentials

extension Slice {
    /// Values at most this long may live inside the value itself and are copied.
    public static let inlineValueLimit = 15

    /// The Data's bytes, retained (a later mutation of the caller's Data copies on write, on the caller's side).
    public init(_ data: Data) {
        if data.count <= Self.inlineValueLimit {
            self.init(copying: Array(data))
            return
        }
        let bytes = data.withUnsafeBytes { $0 }
        self.init(bytes: bytes, keepalive: .data(data))
    }

    /// The string's UTF-8 bytes, retained.
    public init(utf8 string: String) {
        var string = string
        if string.utf8.count <= Self.inlineValueLimit {
            self.init(copying: Array(string.utf8))
            return
        }
        string.makeContiguousUTF8()
        let bytes = string.utf8.withContiguousStorageIfAvailable { UnsafeRawBufferPointer($0) }!
        self.init(bytes: bytes, keepalive: .string(string))
    }

    /// A slice over a copy of `bytes` (counted as copied when written).
    init(copying bytes: [UInt8]) {
        self.init(bytes: bytes.withUnsafeBytes { $0 }, keepalive: .inlineCopy(bytes))
    }
}
