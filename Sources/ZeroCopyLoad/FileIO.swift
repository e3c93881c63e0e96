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
        let ok = text.withCString { fputs($0, f) } >= 0
        let closed = fclose(f) == 0
        guard ok && closed else { throw LoadError("\(path): write failed") }
    }
}
