// Process-wide heap levels from jemalloc (`stats.allocated`, `stats.active`, `stats.resident`, ...), read after
// writing `epoch`. Gauges only, for the timeline; it must never be used to attribute bytes to a thread.

/// jemalloc's global levels at one moment.
public struct HeapStats: Sendable, Equatable {
    /// Live bytes the application allocated.
    public var allocated: Int
    /// Bytes in active pages (at least `allocated`).
    public var active: Int
    /// Physically resident allocator pages, metadata and dirty pages included (an upper bound).
    public var resident: Int
    /// Bytes in mapped extents.
    public var mapped: Int
    /// Allocator metadata.
    public var metadata: Int

    public init(allocated: Int, active: Int, resident: Int, mapped: Int, metadata: Int) {
        self.allocated = allocated
        self.active = active
        self.resident = resident
        self.mapped = mapped
        self.metadata = metadata
    }
}

extension Mallctl {
    /// Reads the levels (after refreshing the statistics unless `refresh` is false because the caller just did);
    /// nil if any of them is unavailable.
    public func heapStats(refresh: Bool = true) -> HeapStats? {
        guard !refresh || refreshStatistics(),
            let allocated = read("stats.allocated", as: Int.self),
            let active = read("stats.active", as: Int.self),
            let resident = read("stats.resident", as: Int.self),
            let mapped = read("stats.mapped", as: Int.self),
            let metadata = read("stats.metadata", as: Int.self)
        else { return nil }
        return HeapStats(allocated: allocated, active: active, resident: resident, mapped: mapped, metadata: metadata)
    }
}
