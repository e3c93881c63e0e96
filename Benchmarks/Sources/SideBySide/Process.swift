// Child processes of a run (our own `serve` children, the C clients and limit servers, iperf3, zcr) are the root
// package's `ChildProcess` (posix_spawn, close-on-exec pipes, a deadline on every wait). This file adds what the
// scenarios use on top: waiting for a line with a given prefix or a JSON object, and exit codes that never throw.
import ChildProcess
import Foundation
import Glibc

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension ChildProcess {
    /// Starts `argv` with its standard error going to ours (as every child of a run does). `input`: a pipe on its
    /// standard input, for children that take commands (`send`) or finish when it closes (`closeInput`);
    /// otherwise /dev/null.
    static func start(_ argv: [String], input: Bool = false) throws -> ChildProcess {
        try ChildProcess(argv, stdinPipe: input, inheritStderr: true)
    }

    /// The program's file name, for messages.
    var name: String { URL(fileURLWithPath: String(command.prefix { $0 != " " })).lastPathComponent }

    /// Reads lines until one starts with `prefix` (each line within `timeout` seconds); returns the rest of it.
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
        return try parseJSONObject(text, from: name)
    }

    /// Waits for the child to exit (killing its process group after `timeout` seconds) and returns its exit code,
    /// or 128 + the signal. Whatever it still prints on standard output is read and dropped.
    @discardableResult
    func wait(timeout: Double = 60) -> Int32 {
        defer { closeInput() }
        do {
            return try finish(timeout: timeout).status
        } catch {
            log("SideBySide: \(error)")
            return 128 + SIGKILL
        }
    }

    /// Closes standard input (children finish on EOF) and waits up to 10 s before killing.
    func terminate() {
        closeInput()
        wait(timeout: 10)
    }
}

func parseJSONObject(_ text: String, from who: String) throws -> [String: Any] {
    guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw HarnessError("\(who) printed something that is not a JSON object: \(text)")
    }
    return object
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
