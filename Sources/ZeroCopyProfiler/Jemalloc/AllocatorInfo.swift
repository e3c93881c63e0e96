// Which allocator runs this process and how it is set up (jemalloc version, arenas, thread caches, profiling),
// recorded in every report because swapping allocators changes performance. It must never claim jemalloc
// without having found its mallctl, and it says plainly what is unavailable when jemalloc is absent.
import Glibc

/// The allocator's identity and settings, as read at run time.
public struct AllocatorInfo: Sendable, Equatable {
    /// "jemalloc", or "unknown (not jemalloc)" when no mallctl was found.
    public var name: String
    public var isJemalloc: Bool
    /// jemalloc built with statistics (`config.stats`): without them no allocation figure exists.
    public var statisticsAvailable: Bool
    public var version: String?
    /// The shared object it came from (from /proc/self/maps), and whether LD_PRELOAD named it.
    public var library: String?
    public var preloaded: Bool
    /// `arenas.narenas` (automatic arenas plus any created so far) and `opt.narenas`.
    public var arenas: Int?
    public var automaticArenas: Int?
    public var threadCache: Bool?
    public var threadCacheMaxBytes: Int?
    public var oversizeThresholdBytes: Int?
    public var backgroundThread: Bool?
    public var dirtyDecayMs: Int?
    public var muzzyDecayMs: Int?
    public var profiling: Bool?
    /// The MALLOC_CONF environment variable, when set.
    public var mallocConf: String?
    /// One sentence for people: what this allocator means for the figures.
    public var note: String

    /// Reads the running allocator.
    public static func detect() -> AllocatorInfo {
        let env = getenv("MALLOC_CONF").map { String(cString: $0) }
        let preload = getenv("LD_PRELOAD").map { String(cString: $0) } ?? ""
        guard let m = Mallctl.find() else {
            return AllocatorInfo(
                name: "unknown (not jemalloc)", isJemalloc: false, statisticsAvailable: false, library: nil,
                preloaded: false, mallocConf: env,
                note: "jemalloc's mallctl was not found in this process, so allocation figures are unavailable "
                    + "(bytes copied, iovec checks, RSS and throughput are still measured). Run the jemalloc-linked "
                    + "zcr, or preload /usr/lib/x86_64-linux-gnu/libjemalloc.so.2.")
        }
        let stats = m.readBool("config.stats") ?? false
        let library = ProcFiles.mappedLibrary(containing: "jemalloc")
        var info = AllocatorInfo(
            name: "jemalloc", isJemalloc: true, statisticsAvailable: stats, library: library,
            preloaded: preload.contains("jemalloc"), mallocConf: env,
            note: stats
                ? "jemalloc statistics: per-thread byte counters are exact; each reactor thread gets its own arena, "
                    + "so its allocation count is exact too."
                : "jemalloc was built without statistics (config.stats false): allocation figures are unavailable.")
        info.version = m.readString("version")
        info.arenas = m.read("arenas.narenas", as: UInt32.self).map { Int($0) }
        info.automaticArenas = m.read("opt.narenas", as: UInt32.self).map { Int($0) }
        info.threadCache = m.readBool("opt.tcache")
        info.threadCacheMaxBytes = m.read("opt.tcache_max", as: Int.self) ?? m.read("arenas.tcache_max", as: Int.self)
        info.oversizeThresholdBytes = m.read("opt.oversize_threshold", as: Int.self)
        info.backgroundThread = m.readBool("opt.background_thread")
        info.dirtyDecayMs = m.read("opt.dirty_decay_ms", as: Int.self)
        info.muzzyDecayMs = m.read("opt.muzzy_decay_ms", as: Int.self)
        info.profiling = m.readBool("opt.prof")
        return info
    }

    init(
        name: String, isJemalloc: Bool, statisticsAvailable: Bool, library: String?, preloaded: Bool,
        mallocConf: String?, note: String
    ) {
        self.name = name
        self.isJemalloc = isJemalloc
        self.statisticsAvailable = statisticsAvailable
        self.library = library
        self.preloaded = preloaded
        self.mallocConf = mallocConf
        self.note = note
    }
}
