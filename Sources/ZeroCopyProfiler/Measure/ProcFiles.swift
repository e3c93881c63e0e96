// Small readers of /proc/self: resident memory and its peak (VmRSS, VmHWM), the peak's reset (clear_refs), and the
// mapped libraries. Plain syscalls, no Foundation. A value it cannot read is nil, never 0.
import Glibc

/// Resident memory of this process at one moment.
public struct ProcessMemory: Sendable, Equatable {
    /// VmRSS in bytes.
    public var rss: Int
    /// VmHWM in bytes: the peak of VmRSS since start or since the last `resetPeak()`.
    public var peak: Int

    /// Reads /proc/self/status.
    public static func read() -> ProcessMemory? {
        guard let text = ProcFiles.read("/proc/self/status"),
            let rss = ProcFiles.kilobytes(field: "VmRSS:", in: text),
            let peak = ProcFiles.kilobytes(field: "VmHWM:", in: text)
        else { return nil }
        return ProcessMemory(rss: rss * 1024, peak: peak * 1024)
    }

    /// Resets VmHWM to the current VmRSS (writes "5" to /proc/self/clear_refs). False if the kernel refused.
    public static func resetPeak() -> Bool {
        let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return Glibc.write(fd, "5", 1) == 1
    }
}

enum ProcFiles {
    /// The whole file (procfs files report size 0, so read until EOF).
    static func read(_ path: String, limit: Int = 1 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { return nil }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// "VmRSS:	  1234 kB" → 1234. Scans bytes, not characters: the profiling endpoint reads it for every snapshot.
    static func kilobytes(field: String, in text: String) -> Int? {
        let key = Array(field.utf8)
        let bytes = Array(text.utf8)
        var lineStart = 0
        while lineStart + key.count <= bytes.count {
            if bytes[lineStart..<lineStart + key.count].elementsEqual(key) {
                var value = 0
                var seen = false
                var i = lineStart + key.count
                while i < bytes.count, bytes[i] != 0x0A {
                    if bytes[i] >= 0x30 && bytes[i] <= 0x39 {
                        value = value * 10 + Int(bytes[i] - 0x30)
                        seen = true
                    }
                    i += 1
                }
                return seen ? value : nil
            }
            guard let newline = bytes[lineStart...].firstIndex(of: 0x0A) else { return nil }
            lineStart = newline + 1
        }
        return nil
    }

    /// The path of the first mapped file whose name contains `fragment`.
    static func mappedLibrary(containing fragment: String) -> String? {
        guard let maps = read("/proc/self/maps", limit: 8 << 20) else { return nil }
        for line in maps.split(separator: "\n") {
            guard let slash = line.firstIndex(of: "/") else { continue }
            let path = line[slash...]
            if path.contains(fragment) { return String(path) }
        }
        return nil
    }
}

/// Whether a run's memory can fit before it starts: MemAvailable (/proc/meminfo) and the address-space limit
/// (RLIMIT_AS, against VmSize now). A figure it cannot read does not refuse anything.
public enum MemoryFit {
    /// nil when `bytes` more can be allocated and touched; else why not, in one line.
    public static func problem(bytes: Int, what: String) -> String? {
        if let text = ProcFiles.read("/proc/meminfo"), let kib = ProcFiles.kilobytes(field: "MemAvailable:", in: text),
            bytes > kib * 1024
        {
            return "\(what) needs \(Format.bytes(bytes)) but only \(Format.bytes(kib * 1024)) is available "
                + "(MemAvailable): refusing to start"
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max {
            let used =
                ProcFiles.read("/proc/self/status").flatMap { ProcFiles.kilobytes(field: "VmSize:", in: $0) }.map {
                    $0 * 1024
                } ?? 0
            if UInt64(used) + UInt64(bytes) > UInt64(limit.rlim_cur) {
                return "\(what) needs \(Format.bytes(bytes)) but the address-space limit (RLIMIT_AS) leaves "
                    + "\(Format.bytes(max(0, Int(clamping: limit.rlim_cur) - used))): refusing to start"
            }
        }
        return nil
    }
}

extension ProfileOptions {
    /// Why this run's payload cannot fit in memory, or nil (seed scenarios: the payload, twice with the copy
    /// control, whose copy is as large).
    public func memoryProblem() -> String? {
        switch scenario {
        case .seedLarge, .seedGather:
            let bytes = payloadBytes.multipliedReportingOverflow(by: copyControl ? 2 : 1)
            return MemoryFit.problem(
                bytes: bytes.overflow ? .max : bytes.partialValue,
                what: "--payload-mib \(payloadBytes >> 20)\(copyControl ? " with --copy-control" : "")")
        case .smallMany, .echo1k: return nil
        }
    }
}
