// The terminal's view of a run: one progress line per sample and the closing summary. Text for people only; the
// figures come from the report unchanged and an unknown one reads "unavailable", never 0.

extension TimelineSample {
    /// "[  3.0 s] window   sent 1.20 GiB   412.3 MiB/s   reactor alloc 0 B   heap 1.00 GiB   RSS 1.02 GiB"
    public var progressLine: String {
        let t = Format.fixed(seconds, 1)
        var line = "[\(String(repeating: " ", count: max(0, 6 - t.count)))\(t) s] \(phase.rawValue.padding(7))"
        line += "  sent \(Format.bytes(bytesSent))  \(throughputBytesPerSecond.map { Format.rate($0) } ?? "-")"
        line += "  reactor alloc \(Format.bytes(reactorBytesAllocated))"
        line += "  heap \(Format.bytes(heap?.allocated))  RSS \(Format.bytes(rss))"
        if bytesCopied > 0 { line += "  copied \(Format.bytes(bytesCopied))" }
        if event != "tick" { line += "  (\(event.replacing("_", with: " ")))" }
        return line
    }
}

extension ProfileReport {
    /// The closing summary: the verdict, then the figures behind it.
    public var summary: String {
        let w = window
        var lines = [
            "\(heading)\(copyControl ? " (\(attached?.copyControl.map { "copy control: \($0)" } ?? "copy control"))" : ""): zero copy \(verdict.zeroCopy ? "YES" : "NO")"
                + (verdict.zeroCopy ? "" : " (\(verdict.reason))"),
            "  sent \(Format.bytes(w.bytesSent)) in \(Format.seconds(w.seconds))"
                + " (\(Format.rate(w.throughputBytesPerSecond)))"
                + (attached == nil ? ", \(Format.count(w.writes)) writes" : "")
                + ", \(Format.count(w.syscalls)) syscalls"
                + " (\(Format.count(w.sendmsgCalls)) sendmsg), \(Format.ratio(w.slicesPerCall)) slices/call",
            w.reactorBytesAllocated == nil
                ? "  reactor threads' allocations: unavailable (\(allocator.name))"
                : "  reactor threads allocated \(Format.bytes(w.reactorBytesAllocated))"
                    + " = \(Format.ratio(w.allocatedBytesPerByteSent)) bytes per byte sent"
                    + (w.reactorAllocations == nil
                        ? "; allocation count unavailable"
                        : "; \(Format.count(w.reactorAllocations)) allocations"
                            + (attached == nil ? " = \(Format.ratio(w.allocationsPerWrite)) per write" : "")),
            "  bytes copied \(Format.bytes(w.bytesCopied)); iovecs verified \(Format.count(w.verifiedIovecs))"
                + ", foreign \(Format.count(w.foreignIovecs))",
            w.reactorMemcpyBytes == nil
                ? "  reactor threads' memcpy: unavailable (no memcpy counter in the process)"
                : "  reactor threads memcpy'd \(Format.bytes(w.reactorMemcpyBytes))"
                    + " = \(Format.ratio(w.memcpyBytesPerByteSent)) bytes per byte sent",
            "  peak RSS growth in the window \(Format.bytes(w.peakRSSGrowth)) (\(peakRSSMethod))",
            "  allocator: \(allocator.name)\(allocator.version.map { " \($0)" } ?? "")",
        ]
        if let n = w.processAllocations {
            lines.insert(
                "  whole process (tcache off): \(Format.count(n)) allocations = "
                    + "\(Format.ratio(w.processAllocationsPerWrite)) per write", at: lines.count - 3)
        }
        if let at = lines.firstIndex(where: { $0.hasPrefix("  bytes copied ") }) {
            var kernel: [String] = []
            if w.sendfileCalls > 0 {
                kernel.append("  sendfile sent \(Format.bytes(w.sendfileBytes)) from the page cache in \(Format.count(w.sendfileCalls)) calls")
            }
            if w.zeroCopySends > 0 {
                let all = w.zeroCopyCompletions > 0 && w.zeroCopyCopied == w.zeroCopyCompletions
                kernel.append("  MSG_ZEROCOPY sent \(Format.bytes(w.zeroCopyBytes)) in \(Format.count(w.zeroCopySends)) sends; "
                    + "\(Format.count(w.zeroCopyCopied)) of \(Format.count(w.zeroCopyCompletions)) completions say the kernel copied anyway"
                    + (all ? " (all of them: on loopback and veth it always copies, so nothing was saved)" : "")
                    + (w.zeroCopyFallbacks > 0 ? "; \(Format.count(w.zeroCopyFallbacks)) ENOBUFS fallbacks" : ""))
            }
            lines.insert(contentsOf: kernel, at: at + 1)
        }
        for c in verdict.checks where !c.passed {
            lines.append("  failed: \(Self.describe(c)): \(c.detail)")
        }
        for t in targets where !t.passed {
            lines.append("  target missed: \(Self.describe(t))")
        }
        if !allocator.isJemalloc || !allocator.statisticsAvailable { lines.append("  note: \(allocator.note)") }
        return lines.joined(separator: "\n")
    }
}

extension ProfileReport {
    /// "bytes_copied 1,048,576 (limit <= 0)", "zero_copy false (must be true)".
    static func describe(_ c: Check) -> String {
        if c.name == "zero_copy" {
            return "zero_copy \(c.value.map { $0 >= 1 ? "true" : "false" } ?? "unavailable") "
                + "(must be \(c.comparison == .atLeast ? "true" : "false"))"
        }
        return
            "\(c.name) \(c.value.map { Format.ratio($0) } ?? "unavailable")"
            + " (limit \(c.comparison.rawValue) \(Format.ratio(c.limit)))"
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
