// The memcpy counter as this process sees it: found at run time with dlsym (linked into zcr, or preloaded as
// libZeroCopyMemcpyCounter.so), never linked by the profiler. Reading only; a counter that is absent is nil, never 0.
import Glibc
import Synchronization

/// The calling thread's counter slot, readable from any thread for the life of the process.
///
/// Invariant: `base` points at a `zcr_memcpy_slot` in the counter's static table (see
/// Sources/CZeroCopyMemcpyCounter/include/zcr_memcpy_counter.h): never freed, 8-byte aligned, written only by its
/// thread with relaxed atomic stores. Every read here is a relaxed atomic load of one of its first four fields.
public struct MemcpySlot: @unchecked Sendable {
    let base: UnsafeRawPointer

    /// Bytes moved by memcpy and memmove (calls at or above the threshold), and the number of such calls.
    public struct Counts: Sendable, Equatable {
        public var memcpyBytes: UInt64
        public var memcpyCalls: UInt64
        public var memmoveBytes: UInt64
        public var memmoveCalls: UInt64
        /// memcpy and memmove together: what the report calls "bytes memcpy'd".
        public var bytes: UInt64 { memcpyBytes &+ memmoveBytes }
        public var calls: UInt64 { memcpyCalls &+ memmoveCalls }
    }

    public func read() -> Counts {
        func field(_ i: Int) -> UInt64 {
            let p = UnsafePointer<Atomic<UInt64>>(OpaquePointer(base + i * 8))
            return p.pointee.load(ordering: .relaxed)
        }
        return Counts(memcpyBytes: field(0), memcpyCalls: field(1), memmoveBytes: field(2), memmoveCalls: field(3))
    }
}

/// The counter's entry points in this process.
public struct MemcpyCounter: @unchecked Sendable {
    private typealias ThreadFn = @convention(c) () -> UnsafeMutableRawPointer?
    private typealias ThresholdFn = @convention(c) () -> Int
    private typealias TotalsFn = @convention(c) (UnsafeMutablePointer<UInt64>) -> Void
    private let threadFn: ThreadFn
    private let totalsFn: TotalsFn
    /// Calls moving fewer bytes than this are not counted.
    public let thresholdBytes: Int
    /// The shared object it came from, or nil when it is linked into the executable.
    public let library: String?

    private static let linked = Mutex<MemcpyCounter?>(nil)

    /// For an executable that links the counter in (zcr): its symbols are not in the dynamic symbol table, so
    /// the executable hands over its entry points once, at start.
    public static func useLinked(
        thread: @escaping @convention(c) () -> UnsafeMutableRawPointer?,
        threshold: @escaping @convention(c) () -> Int,
        totals: @escaping @convention(c) (UnsafeMutablePointer<UInt64>) -> Void
    ) {
        let counter = MemcpyCounter(threadFn: thread, totalsFn: totals, thresholdBytes: threshold(), library: nil)
        linked.withLock { $0 = counter }
    }

    /// The counter, or nil when this process has none (not zcr, nothing preloaded).
    public static func find() -> MemcpyCounter? {
        if let counter = linked.withLock({ $0 }) { return counter }
        guard let t = dlsym(nil, "zcr_memcpy_counter_thread"), let h = dlsym(nil, "zcr_memcpy_counter_threshold"),
            let s = dlsym(nil, "zcr_memcpy_counter_totals")
        else { return nil }
        // Preloaded, it is a mapped shared object of its own; linked into the executable, it has none.
        let library = ProcFiles.mappedLibrary(containing: "libZeroCopyMemcpyCounter")
        return MemcpyCounter(
            threadFn: unsafeBitCast(t, to: ThreadFn.self), totalsFn: unsafeBitCast(s, to: TotalsFn.self),
            thresholdBytes: unsafeBitCast(h, to: ThresholdFn.self)(), library: library)
    }

    /// The calling thread's slot (claimed now if it had none). Call it on the thread to be measured.
    public func currentThread() -> MemcpySlot? {
        threadFn().map { MemcpySlot(base: UnsafeRawPointer($0)) }
    }

    /// Every thread's counts together.
    public func totals() -> MemcpySlot.Counts {
        var out: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &out) { totalsFn($0.baseAddress!.assumingMemoryBound(to: UInt64.self)) }
        return MemcpySlot.Counts(memcpyBytes: out.0, memcpyCalls: out.1, memmoveBytes: out.2, memmoveCalls: out.3)
    }
}
