// The one door to jemalloc: its `mallctl`, found at run time with dlsym, read and written by name with exact sizes.
// It never links jemalloc and never guesses: a failed read (not jemalloc, no statistics, wrong size) is nil, never 0.
// Names are StaticStrings or built once (`MallctlName`), so reading on a reactor thread allocates nothing.
import CZeroCopyShims

/// A mallctl name built at run time ("stats.arenas.9.small.nrequests"), kept as a C string.
public struct MallctlName: Sendable {
    fileprivate let cString: [CChar]
    public init(_ name: String) { cString = Array(name.utf8CString) }
}

/// jemalloc's `mallctl`, present only when jemalloc is this process's allocator (linked or preloaded).
public struct Mallctl: @unchecked Sendable {
    private let function: zcr_mallctl_fn

    /// The running jemalloc, or nil when the allocator is something else.
    public static func find() -> Mallctl? {
        zcr_find_mallctl().map { Mallctl(function: $0) }
    }

    /// An integer of exactly `T`'s size (`size_t`, `uint64_t`, `unsigned`, `bool` as UInt8, a pointer as UInt).
    public func read<T: FixedWidthInteger>(_ name: StaticString, as type: T.Type = T.self) -> T? {
        name.withCName { read($0, as: type) }
    }

    public func read<T: FixedWidthInteger>(_ name: MallctlName, as type: T.Type = T.self) -> T? {
        name.cString.withUnsafeBufferPointer { read($0.baseAddress!, as: type) }
    }

    public func readBool(_ name: StaticString) -> Bool? {
        read(name, as: UInt8.self).map { $0 != 0 }
    }

    /// A `const char *` value (`version`, ...).
    public func readString(_ name: StaticString) -> String? {
        guard let raw = read(name, as: UInt.self), let pointer = UnsafePointer<CChar>(bitPattern: raw) else {
            return nil
        }
        return String(cString: pointer)
    }

    /// Writes an integer of exactly `T`'s size. True on success.
    @discardableResult
    public func write<T: FixedWidthInteger>(_ name: StaticString, _ value: T) -> Bool {
        var v = value
        return name.withCName { function($0, nil, nil, &v, MemoryLayout<T>.size) } == 0
    }

    /// Runs a `void` control such as `thread.tcache.flush`. True on success.
    @discardableResult
    public func run(_ name: StaticString) -> Bool {
        name.withCName { function($0, nil, nil, nil, 0) } == 0
    }

    private func read<T: FixedWidthInteger>(_ name: UnsafePointer<CChar>, as type: T.Type) -> T? {
        var value = T.zero
        var length = MemoryLayout<T>.size
        let rc = function(name, &value, &length, nil, 0)
        guard rc == 0, length == MemoryLayout<T>.size else { return nil }
        return value
    }
}

extension StaticString {
    /// The literal's own bytes as a C string (literals are NUL-terminated): no copy, no allocation.
    fileprivate func withCName<R>(_ body: (UnsafePointer<CChar>) -> R) -> R {
        precondition(hasPointerRepresentation, "mallctl names are ASCII literals")
        return UnsafeRawPointer(utf8Start).withMemoryRebound(to: CChar.self, capacity: utf8CodeUnitCount + 1, body)
    }
}
