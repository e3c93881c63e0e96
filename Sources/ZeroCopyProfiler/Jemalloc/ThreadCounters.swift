// One thread's view of jemalloc: its cumulative allocated/deallocated byte counters (`thread.allocatedp`), the
// dedicated arena that makes its allocation count readable, and the flush of its own thread cache.
// Every function here acts on the CALLING thread; it must never be called on behalf of another thread.

/// Pointers to the calling thread's cumulative byte counters. Exact (updated on every malloc and free, in usable
/// size: malloc(100) counts 112) and cheap (a load). Read them only on the thread they belong to.
public struct ThreadCounterPointers: @unchecked Sendable {
    let allocated: UnsafePointer<UInt64>
    let deallocated: UnsafePointer<UInt64>

    /// The calling thread's counters; nil when jemalloc is absent or built without statistics.
    public static func current(_ mallctl: Mallctl) -> ThreadCounterPointers? {
        guard
            let a = mallctl.read("thread.allocatedp", as: UInt.self).flatMap({ UnsafePointer<UInt64>(bitPattern: $0) }),
            let d = mallctl.read("thread.deallocatedp", as: UInt.self).flatMap({ UnsafePointer<UInt64>(bitPattern: $0) }
            )
        else { return nil }
        return ThreadCounterPointers(allocated: a, deallocated: d)
    }

    /// Bytes this thread has allocated and freed since it started (on the owning thread only).
    public func read() -> (allocated: UInt64, deallocated: UInt64) {
        (allocated.pointee, deallocated.pointee)
    }
}

/// The two request counters of one arena, named once (so reading them later allocates nothing).
public struct ArenaRequestNames: Sendable {
    public let arena: UInt32
    let small: MallctlName
    let large: MallctlName

    public init(arena: UInt32) {
        self.arena = arena
        small = MallctlName("stats.arenas.\(arena).small.nrequests")
        large = MallctlName("stats.arenas.\(arena).large.nrequests")
    }
}

extension Mallctl {
    /// Creates a new arena and makes it the calling thread's, so that the arena's request counters
    /// (`stats.arenas.<i>.{small,large}.nrequests`) count this thread's allocations and nobody else's.
    /// Large allocations follow too: a thread on a manual arena does not use the shared huge arena.
    public func assignDedicatedArena() -> UInt32? {
        guard let arena = read("arenas.create", as: UInt32.self), write("thread.arena", arena) else { return nil }
        return arena
    }

    /// Flushes the calling thread's cache, merging its pending request counts into its arena.
    @discardableResult
    public func flushThreadCache() -> Bool { run("thread.tcache.flush") }

    /// Refreshes the `stats.*` snapshot (write `epoch`). Every `stats.*` read below needs it first.
    @discardableResult
    public func refreshStatistics() -> Bool { write("epoch", UInt64(1)) }

    /// Allocation requests served by `arena` so far (small + large `nrequests`; not `nmalloc`, which counts cache
    /// refills). Counts still sitting in a thread's cache appear only after that thread flushed it.
    public func arenaRequests(_ names: ArenaRequestNames) -> UInt64? {
        guard let small = read(names.small, as: UInt64.self), let large = read(names.large, as: UInt64.self) else {
            return nil
        }
        return small &+ large
    }
}
