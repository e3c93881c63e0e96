// The profiling endpoint's snapshot as JSON (one line, documented in docs/profile.md, "The profiling endpoint") and
// back: the endpoint writes it from a LiveMeter, `zcr profile --attach` reads it into the same MeterSnapshot the
// scenarios use, so both get the same window figures, verdict and report. A figure the server could not measure is
// null on the wire and nil here, never 0.
import Glibc
import ZeroCopyReactor

/// One snapshot as the attach side sees it.
public struct EndpointSnapshot: Sendable {
    public static let version = 1
    public var pid: Int
    public var verifyIovecs: Bool
    /// The server's copy control ("allocate", "reuse"), nil when it has none.
    public var copyControl: String?
    public var allocator: AllocatorInfo
    public var allocationCountsExact: Bool
    public var memcpyCounterPresent: Bool
    public var memcpyThresholdBytes: Int?
    public var memcpyLibrary: String?
    /// `nanos` is the server's CLOCK_MONOTONIC (the same clock as this machine's).
    public var meter: MeterSnapshot
}

extension AllocatorInfo {
    /// The allocator's fields, as in the report's `allocator` object (without the report's own additions).
    func jsonMembers() -> [(String, JSONValue)] {
        [
            ("name", .string(name)), ("jemalloc", .bool(isJemalloc)), ("statistics", .bool(statisticsAvailable)),
            ("version", .of(version)), ("library", .of(library)), ("preloaded", .bool(preloaded)),
            ("arenas", .of(arenas)), ("automatic_arenas", .of(automaticArenas)), ("tcache", .of(threadCache)),
            ("tcache_max_bytes", .of(threadCacheMaxBytes)), ("oversize_threshold_bytes", .of(oversizeThresholdBytes)),
            ("background_thread", .of(backgroundThread)), ("dirty_decay_ms", .of(dirtyDecayMs)),
            ("muzzy_decay_ms", .of(muzzyDecayMs)), ("profiling", .of(profiling)), ("malloc_conf", .of(mallocConf)),
        ]
    }

    init(json j: JSONValue) {
        self.init(
            name: j["name"]?.stringValue ?? "unknown", isJemalloc: j["jemalloc"]?.boolValue ?? false,
            statisticsAvailable: j["statistics"]?.boolValue ?? false, library: j["library"]?.stringValue,
            preloaded: j["preloaded"]?.boolValue ?? false, mallocConf: j["malloc_conf"]?.stringValue,
            note: j["note"]?.stringValue ?? "")
        version = j["version"]?.stringValue
        arenas = j["arenas"]?.intValue
        automaticArenas = j["automatic_arenas"]?.intValue
        threadCache = j["tcache"]?.boolValue
        threadCacheMaxBytes = j["tcache_max_bytes"]?.intValue
        oversizeThresholdBytes = j["oversize_threshold_bytes"]?.intValue
        backgroundThread = j["background_thread"]?.boolValue
        dirtyDecayMs = j["dirty_decay_ms"]?.intValue
        muzzyDecayMs = j["muzzy_decay_ms"]?.intValue
        profiling = j["profiling"]?.boolValue
    }
}

extension LiveMeter {
    /// The snapshot the endpoint sends: one line of JSON, without the newline.
    func snapshotJSON(copyControl: String?) -> String {
        let s = snapshot()
        let totals = memcpyCounter?.totals()
        let threads: [JSONValue] = s.loops.map { r in
            let c = r.counters
            return .object([
                ("loop", .int(r.loop)), ("thread_id", .int(Int(r.threadID))), ("arena", .of(r.arena.map { Int($0) })),
                ("bytes_allocated", .of(r.allocatedBytes)), ("bytes_deallocated", .of(r.deallocatedBytes)),
                ("allocations", .of(r.requests)),
                ("bytes_sent", .int(c.write.bytesWritten)), ("bytes_received", .int(c.bytesRead)),
                ("reads", .int(c.reads)), ("send_calls", .int(c.write.sendCalls)),
                ("sendmsg_calls", .int(c.write.sendmsgCalls)), ("slices_written", .int(c.write.slicesWritten)),
                ("partial_writes", .int(c.write.partialWrites)), ("would_blocks", .int(c.write.wouldBlocks)),
                ("verified_iovecs", .int(c.write.verifiedIovecs)), ("foreign_iovecs", .int(c.write.foreignIovecs)),
                ("bytes_copied", .int(c.bytesCopied)), ("sendfile_calls", .int(c.write.sendfileCalls)),
                ("sendfile_bytes", .int(c.write.sendfileBytes)), ("staged_bytes", .int(c.write.stagedBytes)),
                ("zerocopy_sends", .int(c.write.zeroCopySends)), ("zerocopy_bytes", .int(c.write.zeroCopyBytes)),
                ("zerocopy_completions", .int(c.write.zeroCopyCompletions)),
                ("zerocopy_copied", .int(c.write.zeroCopyCopied)), ("zerocopy_fallbacks", .int(c.write.zeroCopyFallbacks)),
                ("memcpy_bytes", .of(r.memcpy?.memcpyBytes)), ("memcpy_calls", .of(r.memcpy?.memcpyCalls)),
                ("memmove_bytes", .of(r.memcpy?.memmoveBytes)), ("memmove_calls", .of(r.memcpy?.memmoveCalls)),
                ("read_bytes_held", .int(c.readBytesHeld)), ("read_buffers_held", .int(c.readBuffersHeld)),
                ("read_buffers_free", .int(c.readBuffersFree)), ("read_buffers_allocated", .int(c.readBuffersAllocated)),
                ("connections_open", .int(c.connectionsOpen)), ("connections_accepted", .int(c.connectionsAccepted)),
                ("wakeups", .int(c.wakeups)), ("iterations", .int(c.iterations)),
            ])
        }
        return JSONValue.object([
            ("endpoint_version", .int(EndpointSnapshot.version)),
            ("pid", .int(Int(getpid()))),
            ("t_ns", .uint(s.nanos)),
            ("loops", .int(s.loops.count)),
            ("verify_iovecs", .bool(pool.configuration.verifyIovecs)),
            ("copy_control", .of(copyControl)),
            ("allocator", .object(allocator.jsonMembers() + [("note", .string(allocator.note))])),
            ("allocation_counts_exact", .bool(allocationCountsExact)),
            (
                "memcpy_counter",
                .object([
                    ("present", .bool(memcpyCounter != nil)),
                    ("threshold_bytes", .of(memcpyCounter?.thresholdBytes)),
                    ("library", .of(memcpyCounter?.library)),
                ])
            ),
            (
                "process",
                .object([
                    ("rss_bytes", .of(s.memory?.rss)), ("rss_peak_bytes", .of(s.memory?.peak)),
                    ("heap", ProfileReport.json(s.heap)),
                    ("memcpy_bytes", .of(totals?.bytes)), ("memcpy_calls", .of(totals?.calls)),
                ])
            ),
            ("reactor_threads", .array(threads)),
        ]).renderLine()
    }
}

extension EndpointSnapshot {
    /// Reads one answer of the endpoint; a missing or malformed field is an error naming it.
    public init(json text: String) throws(ProfileError) {
        let j: JSONValue
        do { j = try JSONValue.parse(text) } catch { throw .attach("the endpoint's answer is not JSON: \(error)") }
        if let message = j["error"]?.stringValue { throw .attach("the endpoint answered: \(message)") }
        guard let version = j["endpoint_version"]?.intValue else {
            throw .attach("the endpoint's answer has no endpoint_version")
        }
        guard version == Self.version else {
            throw .attach("the endpoint speaks version \(version); this zcr reads version \(Self.version)")
        }
        func need<T>(_ v: T?, _ name: String) throws(ProfileError) -> T {
            guard let v else { throw .attach("the endpoint's snapshot lacks \(name)") }
            return v
        }
        pid = try need(j["pid"]?.intValue, "pid")
        verifyIovecs = j["verify_iovecs"]?.boolValue ?? false
        copyControl = j["copy_control"]?.stringValue
        allocator = AllocatorInfo(json: try need(j["allocator"], "allocator"))
        allocationCountsExact = j["allocation_counts_exact"]?.boolValue ?? false
        let memcpy = j["memcpy_counter"]
        memcpyCounterPresent = memcpy?["present"]?.boolValue ?? false
        memcpyThresholdBytes = memcpy?["threshold_bytes"]?.intValue
        memcpyLibrary = memcpy?["library"]?.stringValue
        let threads = try need(j["reactor_threads"]?.arrayValue, "reactor_threads")
        var loops: [LoopReading] = []
        for t in threads {
            func int(_ key: String) throws(ProfileError) -> Int { try need(t[key]?.intValue, "reactor_threads.\(key)") }
            var c = LoopCounters()
            c.loop = try int("loop")
            c.write.bytesWritten = try int("bytes_sent")
            c.bytesRead = try int("bytes_received")
            c.reads = try int("reads")
            c.write.sendCalls = try int("send_calls")
            c.write.sendmsgCalls = try int("sendmsg_calls")
            c.write.slicesWritten = try int("slices_written")
            c.write.partialWrites = try int("partial_writes")
            c.write.wouldBlocks = try int("would_blocks")
            c.write.verifiedIovecs = try int("verified_iovecs")
            c.write.foreignIovecs = try int("foreign_iovecs")
            c.bytesCopied = try int("bytes_copied")
            c.write.sendfileCalls = try int("sendfile_calls")
            c.write.sendfileBytes = try int("sendfile_bytes")
            c.write.stagedBytes = try int("staged_bytes")
            c.write.zeroCopySends = try int("zerocopy_sends")
            c.write.zeroCopyBytes = try int("zerocopy_bytes")
            c.write.zeroCopyCompletions = try int("zerocopy_completions")
            c.write.zeroCopyCopied = try int("zerocopy_copied")
            c.write.zeroCopyFallbacks = try int("zerocopy_fallbacks")
            c.readBytesHeld = try int("read_bytes_held")
            c.readBuffersHeld = try int("read_buffers_held")
            c.readBuffersFree = try int("read_buffers_free")
            c.readBuffersAllocated = try int("read_buffers_allocated")
            c.connectionsOpen = try int("connections_open")
            c.connectionsAccepted = try int("connections_accepted")
            c.wakeups = try int("wakeups")
            c.iterations = try int("iterations")
            var r = LoopReading(
                loop: c.loop, threadID: Int32(truncatingIfNeeded: try int("thread_id")),
                arena: t["arena"]?.intValue.map { UInt32(truncatingIfNeeded: $0) },
                allocatedBytes: t["bytes_allocated"]?.uint64Value, deallocatedBytes: t["bytes_deallocated"]?.uint64Value,
                requests: t["allocations"]?.uint64Value, counters: c)
            if let mb = t["memcpy_bytes"]?.uint64Value, let mc = t["memcpy_calls"]?.uint64Value,
                let vb = t["memmove_bytes"]?.uint64Value, let vc = t["memmove_calls"]?.uint64Value
            {
                r.memcpy = MemcpySlot.Counts(memcpyBytes: mb, memcpyCalls: mc, memmoveBytes: vb, memmoveCalls: vc)
            }
            loops.append(r)
        }
        var meter = MeterSnapshot(nanos: try need(j["t_ns"]?.uint64Value, "t_ns"), loops: loops)
        let process = j["process"]
        if let rss = process?["rss_bytes"]?.intValue, let peak = process?["rss_peak_bytes"]?.intValue {
            meter.memory = ProcessMemory(rss: rss, peak: peak)
        }
        if let h = process?["heap"], !h.isNull, let a = h["allocated_bytes"]?.intValue,
            let ac = h["active_bytes"]?.intValue, let r = h["resident_bytes"]?.intValue,
            let m = h["mapped_bytes"]?.intValue, let md = h["metadata_bytes"]?.intValue
        {
            meter.heap = HeapStats(allocated: a, active: ac, resident: r, mapped: m, metadata: md)
        }
        self.meter = meter
    }
}
