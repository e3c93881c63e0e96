// Whole-file reads and writes for payload files, logs and JSON reports, with errors that name the path.
// Blocking Glibc calls, used only before or after a run, never on a loop thread.
import Glibc

public enum FileIO {
    public static func read(_ path: String, limit: Int = 1 << 30) throws(LoadError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LoadError("\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw LoadError("\(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { return out }
            out += chunk[0..<n]
            guard out.count <= limit else { throw LoadError("\(path) is larger than \(limit) bytes") }
        }
    }

    public static func write(_ text: String, to path: String) throws(LoadError) {
        guard let f = fopen(path, "w") else { throw LoadError("\(path): \(String(cString: strerror(errno)))") }
        var failure: Int32 = 0
        if text.withCString({ fputs($0, f) }) < 0 { failure = errno }
        if fflush(f) != 0 && failure == 0 { failure = errno }
        if fclose(f) != 0 && failure == 0 { failure = errno }
        guard failure == 0 else { throw LoadError("\(path): write failed: \(String(cString: strerror(failure)))") }
    }

    /// Before a run: can `path` be created or written? Opens it for writing without truncating (creating it empty
    /// if it did not exist), so a bad directory or a read-only file fails before any connection is made.
    public static func checkWritable(_ path: String) throws(LoadError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LoadError("\(path): \(String(cString: strerror(errno)))") }
        close(fd)
    }
}
