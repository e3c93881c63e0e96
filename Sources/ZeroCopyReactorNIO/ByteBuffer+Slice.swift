// SwiftNIO interop, in its own product so the core never depends on SwiftNIO: a ByteBuffer's readable bytes become
// a Slice without copying. Invariant: a ByteBuffer's storage is a class whose bytes stay put while it is alive; the
// slice retains that storage, so a later write to the caller's ByteBuffer copies on write on the caller's side.
public import NIOCore
public import ZeroCopyReactor

extension Slice {
    /// The buffer's readable bytes, retained through its storage (no copy).
    public init(_ buffer: ByteBuffer) {
        let (bytes, storage) = buffer.withUnsafeReadableBytesWithStorageManagement { pointer, storage in
            (pointer, storage.takeUnretainedValue())
        }
        self.init(unsafeBytes: bytes, owner: storage)
    }
}

extension Connection {
    /// Writes the buffer's readable bytes without copying them.
    public func write(_ buffer: ByteBuffer) throws(ReactorError) {
        try write(Slice(buffer))
    }
}
