// Child processes of a run (our own `serve` children, the C clients and limit servers, iperf3): spawned with pipes
// on standard input and output, read line by line with a deadline so that a stuck child fails the run loudly.
import CBenchSupport
import Foundation
import Glibc

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

final class ChildProcess {
    let pid: pid_t
    let name: String
    private var input: Int32
    private let output: Int32
    private var pending: [UInt8] = []
    private var exited: Int32?

    init(_ argv: [String]) throws {
        var inFD: Int32 = -1
        var outFD: Int32 = -1
        var cArgs = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        let pid = zcrb_spawn(&cArgs, &inFD, &outFD)
        guard pid > 0 else { throw HarnessError("cannot start \(argv[0]): \(String(cString: strerror(errno)))") }
        self.pid = pid
        self.name = URL(fileURLWithPath: argv[0]).lastPathComponent
        input = inFD
        output = outFD
    }

    /// The next line of the child's standard output; throws at EOF or after `timeout` seconds.
    func readLine(timeout: Double = 120) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeSubrange(...nl)
                return line
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw HarnessError("\(name) (pid \(pid)) printed no line within \(Int(timeout)) s") }
            var pfd = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let rc = poll(&pfd, 1, Int32(min(left, 1) * 1000))
            if rc < 0 && errno == EINTR { continue }
            guard rc > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(output, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw HarnessError("\(name) (pid \(pid)) ended its output before the expected line") }
            pending.append(contentsOf: chunk[0..<n])
        }
    }

    /// Reads lines until one starts with `prefix`; returns the rest of that line.
    func expect(_ prefix: String, timeout: Double = 120) throws -> String {
        while true {
            let line = try readLine(timeout: timeout)
            if line.hasPrefix(prefix) { return String(line.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces) }
        }
    }

    /// The JSON object on the next line that starts with `prefix`. A prefix of "{" is part of the object (the C
    /// clients print bare JSON lines); any other prefix is not.
    func expectJSON(_ prefix: String, timeout: Double = 120) throws -> [String: Any] {
        var text = try expect(prefix, timeout: timeout)
        if prefix == "{" { text = "{" + text }
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw HarnessError("\(name) printed something that is not a JSON object: \(text)")
        }
        return object
    }

    func send(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(input, $0.baseAddress, $0.count) }
    }

    /// Closes the child's standard input: how every child is told to finish.
    func closeInput() {
        if input >= 0 { Glibc.close(input); input = -1 }
    }

    /// Waits for the child to exit (killing it after `timeout` seconds) and returns its exit status.
    @discardableResult
    func wait(timeout: Double = 60) -> Int32 {
        if let exited { return exited }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                Glibc.kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                break
            }
            usleep(2000)
        }
        Glibc.close(output)
        closeInput()
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        exited = code
        return code
    }

    /// Closes standard input (children finish on EOF) and waits up to 10 s before killing.
    func terminate() {
        closeInput()
        wait(timeout: 10)
    }

    /// A field of /proc/PID/status in bytes (VmRSS, VmHWM), or nil.
    func memory(_ field: String) -> Int? { procStatus(pid: "\(pid)", field: field) }
}

/// Reads "Field:   N kB" from /proc/PID/status, in bytes.
func procStatus(pid: String, field: String) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
    }
    return nil
}

/// User + system CPU seconds of this process so far.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// A free TCP port on 127.0.0.1 right now (for programs that cannot report the one they bound, like iperf3).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { Glibc.close(fd) }
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
            _ = bind(fd, p, len)
            return getsockname(fd, p, &len)
        }
    }
    return Int(UInt16(bigEndian: sin.sin_port))
}
