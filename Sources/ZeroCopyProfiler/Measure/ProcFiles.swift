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

    /// "VmRSS:	  1234 kB" → 1234.
    static func kilobytes(field: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix(field) {
            let digits = line.dropFirst(field.count).filter { $0.isNumber }
            return Int(digits)
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
