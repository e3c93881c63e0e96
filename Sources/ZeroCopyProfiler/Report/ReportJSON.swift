// The report as JSON: the stable field names documented in docs/profile.md, in that order.
// Renaming or removing a field here is a breaking change: bump `ProfileReport.schemaVersion` and docs/profile.md.

extension ProfileReport {
    /// The JSON document (pretty-printed, keys in documented order, unknown figures as null).
    public func json() -> String { jsonValue().render() }

    func jsonValue() -> JSONValue {
        let w = window
        return .object([
            ("schema_version", .int(Self.schemaVersion)),
            ("scenario", .string(subject)),
            ("copy_control", .bool(copyControl)),
            ("attached", attachedJSON()),
            ("zero_copy", .bool(verdict.zeroCopy)),
            ("verdict_checks", .array(verdict.checks.map(Self.json))),
            (
                "thresholds",
                .object([
                    ("max_allocated_bytes_per_byte_sent", .double(thresholds.maxAllocatedBytesPerByteSent)),
                    ("max_bytes_copied", .int(thresholds.maxBytesCopied)),
                    ("max_foreign_iovecs", .int(thresholds.maxForeignIovecs)),
                    ("max_memcpy_bytes_per_byte_sent", .double(thresholds.maxMemcpyBytesPerByteSent)),
                ])
            ),
            ("targets", .array(targets.map(Self.json))),
            ("allocator", allocatorJSON()),
            (
                "memcpy_counter",
                .object([
                    ("present", .bool(memcpyCounter.present)),
                    ("threshold_bytes", .of(memcpyCounter.thresholdBytes)),
                    ("library", .of(memcpyCounter.library)),
                ])
            ),
            ("loops", .int(threads)),
            ("parameters", .object(parameters.map { ($0.0, .int($0.1)) })),
            ("window_seconds", .double(w.seconds)),
            ("bytes_sent", .int(w.bytesSent)),
            ("bytes_received", .int(w.bytesRead)),
            ("writes", attached == nil ? .int(w.writes) : .null),
            ("reactor_bytes_allocated", .of(w.reactorBytesAllocated)),
            ("reactor_bytes_deallocated", .of(w.reactorBytesDeallocated)),
            ("reactor_allocations", .of(w.reactorAllocations)),
            ("allocated_bytes_per_byte_sent", .of(w.allocatedBytesPerByteSent)),
            ("allocations_per_write", .of(w.allocationsPerWrite)),
            ("process_allocations", .of(w.processAllocations)),
            ("process_allocations_per_write", .of(w.processAllocationsPerWrite)),
            ("bytes_copied", .int(w.bytesCopied)),
            ("verified_iovecs", .int(w.verifiedIovecs)),
            ("foreign_iovecs", .int(w.foreignIovecs)),
            ("memcpy_bytes", .of(w.reactorMemcpyBytes)),
            ("memcpy_calls", .of(w.reactorMemcpyCalls)),
            ("memcpy_bytes_per_byte_sent", .of(w.memcpyBytesPerByteSent)),
            ("read_bytes_held", .int(w.readBytesHeld)),
            ("peak_rss_growth_bytes", .of(w.peakRSSGrowth)),
            ("peak_rss_method", .string(peakRSSMethod)),
            ("rss_at_window_start_bytes", .of(w.rssAtStart)),
            ("peak_rss_bytes", .of(w.peakRSS)),
            ("throughput_bytes_per_s", .of(w.throughputBytesPerSecond)),
            ("send_calls", .int(w.sendCalls)),
            ("sendmsg_calls", .int(w.sendmsgCalls)),
            ("syscalls", .int(w.syscalls)),
            ("slices_written", .int(w.slicesWritten)),
            ("slices_per_call", .double(w.slicesPerCall)),
            ("partial_writes", .int(w.partialWrites)),
            ("would_blocks", .int(w.wouldBlocks)),
            ("sendfile_calls", .int(w.sendfileCalls)),
            ("sendfile_bytes", .int(w.sendfileBytes)),
            ("zerocopy_sends", .int(w.zeroCopySends)),
            ("zerocopy_bytes", .int(w.zeroCopyBytes)),
            ("zerocopy_completions", .int(w.zeroCopyCompletions)),
            ("zerocopy_copied", .int(w.zeroCopyCopied)),
            ("zerocopy_fallbacks", .int(w.zeroCopyFallbacks)),
            ("staged_bytes", .int(w.stagedBytes)),
            ("driver_bytes_allocated", .of(w.driverAllocatedBytes)),
            (
                "heap",
                .object([
                    ("at_window_start", Self.json(w.heapAtStart)),
                    ("at_window_end", Self.json(w.heapAtEnd)),
                ])
            ),
            ("window", .object([("start_s", .double(windowStartSeconds)), ("end_s", .double(windowEndSeconds))])),
            ("reactor_threads", .array(w.threads.map(Self.json))),
            ("timeline", .array(timeline.map(Self.json))),
            ("notes", .array(notes.map { .string($0) })),
        ])
    }

    private func allocatorJSON() -> JSONValue {
        .object(
            allocator.jsonMembers() + [
                ("dedicated_reactor_arenas", .bool(dedicatedArenas)), ("note", .string(allocator.note)),
            ])
    }

    private func attachedJSON() -> JSONValue {
        guard let a = attached else { return .null }
        return .object([
            ("path", .string(a.path)), ("pid", .int(a.pid)), ("copy_control", .of(a.copyControl)),
            ("verify_iovecs", .bool(a.verifyIovecs)), ("allocation_counts_exact", .bool(a.allocationCountsExact)),
            ("warmup_s", .double(a.warmupSeconds)), ("duration_s", .double(a.durationSeconds)),
            ("sample_interval_s", .double(a.sampleIntervalSeconds)),
        ])
    }

    static func json(_ c: Check) -> JSONValue {
        .object([
            ("name", .string(c.name)), ("value", .of(c.value)), ("comparison", .string(c.comparison.rawValue)),
            ("limit", .double(c.limit)), ("passed", .bool(c.passed)), ("detail", .string(c.detail)),
        ])
    }

    static func json(_ h: HeapStats?) -> JSONValue {
        guard let h else { return .null }
        return .object([
            ("allocated_bytes", .int(h.allocated)), ("active_bytes", .int(h.active)),
            ("resident_bytes", .int(h.resident)),
            ("mapped_bytes", .int(h.mapped)), ("metadata_bytes", .int(h.metadata)),
        ])
    }

    static func json(_ t: ThreadFigures) -> JSONValue {
        .object([
            ("loop", .int(t.loop)), ("thread_id", .int(Int(t.threadID))), ("arena", .of(t.arena.map { Int($0) })),
            ("bytes_allocated", .of(t.allocatedBytes)), ("bytes_deallocated", .of(t.deallocatedBytes)),
            ("allocations", .of(t.allocations)), ("bytes_sent", .int(t.bytesWritten)),
            ("bytes_received", .int(t.bytesRead)),
            ("reads", .int(t.reads)), ("send_calls", .int(t.write.sendCalls)),
            ("sendmsg_calls", .int(t.write.sendmsgCalls)),
            ("slices_written", .int(t.write.slicesWritten)), ("partial_writes", .int(t.write.partialWrites)),
            ("would_blocks", .int(t.write.wouldBlocks)), ("verified_iovecs", .int(t.write.verifiedIovecs)),
            ("foreign_iovecs", .int(t.write.foreignIovecs)), ("bytes_copied", .int(t.bytesCopied)),
            ("wakeups", .int(t.wakeups)), ("iterations", .int(t.iterations)),
            ("memcpy_bytes", .of(t.memcpyBytes)), ("memcpy_calls", .of(t.memcpyCalls)),
            ("read_bytes_held", .int(t.readBytesHeld)),
        ])
    }

    static func json(_ s: TimelineSample) -> JSONValue {
        .object([
            ("t_s", .double((s.seconds * 1e6).rounded() / 1e6)), ("event", .string(s.event)),
            ("phase", .string(s.phase.rawValue)),
            ("bytes_sent", .int(s.bytesSent)), ("throughput_bytes_per_s", .of(s.throughputBytesPerSecond?.rounded())),
            ("reactor_bytes_allocated", .of(s.reactorBytesAllocated)),
            ("heap_allocated_bytes", .of(s.heap?.allocated)), ("heap_active_bytes", .of(s.heap?.active)),
            ("heap_resident_bytes", .of(s.heap?.resident)), ("rss_bytes", .of(s.rss)),
            ("rss_peak_bytes", .of(s.rssPeak)),
            ("bytes_copied", .int(s.bytesCopied)),
            ("memcpy_bytes", .of(s.memcpyBytes)),
        ])
    }
}
