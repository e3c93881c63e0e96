// Child processes for the tests and the benchmarks: `zcr` itself, Python clients, C limit programs, iperf3.
//
// Foundation's `Process` is not used on purpose. On Linux its `waitUntilExit()` waits on a run loop for a SIGCHLD
// monitor and its pipes are not close-on-exec, so a child started by one test can hold the write end of another
// test's pipe open; either way a wait can last forever, and a test suite that hangs never says which test hung.
// Here every descriptor is opened with O_CLOEXEC (posix_spawn's dup2 clears the flag only on the child's 0, 1, 2),
// both output pipes are read with poll() so that neither can fill up while the other is drained, and every wait
// has a deadline after which the child's whole process group is killed and the caller gets an error that names
// the command.
import CZeroCopyShims
import Glibc

/// Why a child could not be started, or did not finish in time.
public struct ChildProcessError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How a child ended.
public enum Termination: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    /// The shell's convention: the exit code, or 128 + the signal.
    public var code: Int32 {
        switch self {
        case .exited(let c): return c
        case .signalled(let s): return 128 + s
        }
    }

    public var description: String {
        switch self {
        case .exited(let c): return "exit \(c)"
        case .signalled(let s): return "signal \(s)"
        }
    }

    init(waitStatus status: Int32) {
        let signal = status & 0x7f
        self = signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
    }
}

/// What a finished child printed and how it ended.
public struct ChildOutput: Sendable {
    public var termination: Termination
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var status: Int32 { termination.code }
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// One child process, owned by one caller at a time (not thread-safe; `Sendable` so that it can be handed to the
/// thread that waits for it). Its standard input is a pipe (`send`, `closeInput`) or /dev/null; its standard
/// output and error are pipes, or error goes to this process's own standard error (`inheritStderr`).
///
/// Invariants: `pid` is reaped exactly once (by `finish`, `kill` or deinit); every pipe end this side holds is
/// closed exactly once; the child runs in a process group of its own, so that killing it also kills what it started.
public final class ChildProcess: @unchecked Sendable {
    public let pid: Int32
    public let command: String
    private var input: Int32
    private var output: Int32
    private var errors: Int32
    private var stdoutBuffer: [UInt8] = []
    private var stderrBuffer: [UInt8] = []
    private var termination: Termination?

    /// Starts `argv` (a path, or a name looked up in PATH). `environment` adds to or replaces variables of this
    /// process's environment.
    public init(
        _ argv: [String], environment: [String: String] = [:], stdinPipe: Bool = false, inheritStderr: Bool = false
    ) throws {
        precondition(!argv.isEmpty, "ChildProcess needs a command")
        command = argv.joined(separator: " ")
        var inPipe: [Int32] = [-1, -1]
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        var opened: [Int32] = []
        func closeAll() { for fd in opened where fd >= 0 { Glibc.close(fd) } }
        func makePipe(_ p: inout [Int32]) throws {
            guard zcr_pipe_cloexec(&p) == 0 else {
                let e = errno
                closeAll()
                throw ChildProcessError("cannot start \(argv[0]): pipe2: \(String(cString: strerror(e)))")
            }
            opened += p
        }
        if stdinPipe { try makePipe(&inPipe) }
        try makePipe(&outPipe)
        if !inheritStderr { try makePipe(&errPipe) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if stdinPipe {
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        if !inheritStderr { posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A process group of its own (killed as a whole on timeout) and default signal dispositions: a test process
        // may ignore SIGPIPE, and an ignored signal stays ignored across exec.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var env: [String: String] = [:]
        var entry = environ
        while let p = entry.pointee {
            let pair = String(cString: p)
            if let eq = pair.firstIndex(of: "=") { env[String(pair[..<eq])] = String(pair[pair.index(after: eq)...]) }
            entry += 1
        }
        for (k, v) in environment { env[k] = v }
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, argv[0], &actions, &attributes, cArgs, cEnv)
        guard rc == 0 else {
            closeAll()
            throw ChildProcessError("cannot start \(argv[0]): \(String(cString: strerror(rc)))")
        }
        pid = child
        // The child holds its own copies now; this side keeps only its ends.
        if stdinPipe { Glibc.close(inPipe[0]) }
        Glibc.close(outPipe[1])
        if !inheritStderr { Glibc.close(errPipe[1]) }
        input = inPipe[1]
        output = outPipe[0]
        errors = errPipe[0]
    }

    deinit {
        if termination == nil { kill() }
        closeInput()
        closeOutputs()
    }

    /// Writes `line` and a newline to the child's standard input (a no-op once input is closed or without a pipe).
    public func send(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        var off = 0
        while input >= 0 && off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(input, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            off += n
        }
    }

    /// Closes the child's standard input: how children that read it are told to finish.
    public func closeInput() {
        if input >= 0 {
            Glibc.close(input)
            input = -1
        }
    }

    /// Sends `signal` to the child (not to its group).
    public func signal(_ signal: Int32) {
        if termination == nil { _ = Glibc.kill(pid, signal) }
    }

    /// Kills the child's whole process group and reaps the child.
    public func kill() {
        guard termination == nil else { return }
        _ = Glibc.kill(-pid, SIGKILL)
        _ = Glibc.kill(pid, SIGKILL)
        termination = reap(blocking: true)
    }

    /// The next line of standard output, without its newline. Throws at end of output, or after `timeout` seconds
    /// (the child keeps running; `finish` or `kill` it).
    public func readLine(timeout: Double) throws -> String {
        let deadline = Self.now() + timeout
        while true {
            if let nl = stdoutBuffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: stdoutBuffer[..<nl], as: UTF8.self)
                stdoutBuffer.removeSubrange(...nl)
                return line
            }
            guard output >= 0 else {
                throw ChildProcessError("\(command) (pid \(pid)) ended its output before the expected line")
            }
            let left = deadline - Self.now()
            guard left > 0 else {
                throw ChildProcessError("\(command) (pid \(pid)) printed no line within \(Self.seconds(timeout))")
            }
            pump(timeout: left)
        }
    }

    /// Reads both outputs to their end and reaps the child. After `timeout` seconds the child's process group is
    /// killed and the error says so, with what the child had printed.
    public func finish(timeout: Double) throws -> ChildOutput {
        let deadline = Self.now() + timeout
        while output >= 0 || errors >= 0 {
            let left = deadline - Self.now()
            if left <= 0 { break }
            pump(timeout: left)
        }
        if output < 0 && errors < 0 {
            // Output ended; the exit follows at once, unless the child closed its outputs and went on.
            while termination == nil {
                if let t = reap(blocking: false) {
                    termination = t
                    break
                }
                if Self.now() >= deadline { break }
                var pause = timespec(tv_sec: 0, tv_nsec: 1_000_000)
                nanosleep(&pause, nil)
            }
        }
        guard let termination else {
            kill()
            closeOutputs()
            throw ChildProcessError(
                "\(command) (pid \(pid)) did not finish within \(Self.seconds(timeout)) and was killed; "
                    + "its output so far: \(String(decoding: stdoutBuffer.suffix(2000), as: UTF8.self))"
                    + " | \(String(decoding: stderrBuffer.suffix(2000), as: UTF8.self))")
        }
        return ChildOutput(termination: termination, stdout: stdoutBuffer, stderr: stderrBuffer)
    }

    /// A field of /proc/PID/status in bytes (VmRSS, VmHWM), or nil.
    public func memory(_ field: String) -> Int? { procStatus(pid: "\(pid)", field: field) }

    /// Starts `argv`, reads everything it prints and waits for it to end (killing it after `timeout` seconds).
    public static func run(
        _ argv: [String], environment: [String: String] = [:], timeout: Double = 120
    ) throws -> ChildOutput {
        try ChildProcess(argv, environment: environment).finish(timeout: timeout)
    }

    // MARK: - Internals

    /// Waits up to `timeout` seconds for either output pipe to be readable and reads what is there; closes a pipe
    /// at its end.
    private func pump(timeout: Double) {
        var fds: [pollfd] = []
        if output >= 0 { fds.append(pollfd(fd: output, events: Int16(POLLIN), revents: 0)) }
        if errors >= 0 { fds.append(pollfd(fd: errors, events: Int16(POLLIN), revents: 0)) }
        guard !fds.isEmpty else { return }
        let ms = Int32(max(1, min(timeout, 1) * 1000))
        let rc = poll(&fds, nfds_t(fds.count), ms)
        guard rc > 0 else { return }  // timeout or EINTR: the caller checks its deadline
        var chunk = [UInt8](repeating: 0, count: 65536)
        for p in fds where p.revents != 0 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(p.fd, $0.baseAddress, $0.count) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if p.fd == output {
                if n > 0 { stdoutBuffer += chunk[0..<n] } else { Glibc.close(output); output = -1 }
            } else {
                if n > 0 { stderrBuffer += chunk[0..<n] } else { Glibc.close(errors); errors = -1 }
            }
        }
    }

    private func reap(blocking: Bool) -> Termination? {
        var status: Int32 = 0
        while true {
            let rc = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if rc == pid { return Termination(waitStatus: status) }
            if rc == 0 { return nil }
            if errno == EINTR { continue }
            return .exited(-1)  // ECHILD: someone else reaped it; nothing is left to wait for
        }
    }

    private func closeOutputs() {
        if output >= 0 { Glibc.close(output); output = -1 }
        if errors >= 0 { Glibc.close(errors); errors = -1 }
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private static func seconds(_ s: Double) -> String { s == s.rounded() ? "\(Int(s)) s" : "\(s) s" }
}

/// Reads "Field:   N kB" from /proc/PID/status, in bytes.
public func procStatus(pid: String, field: String) -> Int? {
    let fd = open("/proc/\(pid)/status", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix(field + ":") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
    }
    return nil
}
