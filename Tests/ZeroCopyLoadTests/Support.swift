// Test support: servers written with plain Glibc sockets and threads (an echo server and a blast server that can
// send one wrong byte), a port nothing listens on, blocking work moved off Swift concurrency's threads, running
// the built `zcr` binary, and JSON reading. Nothing here uses the generator under test.
@_exported import TestSupport
import Foundation
import Glibc
import Synchronization
import Testing
import ZeroCopyReactor

/// Every test that runs loads or the binary, one at a time: on two cores, parallel runs would measure each other.
@Suite(.serialized, .timeLimit(.minutes(1))) enum LoadRuns {}



/// A TCP server on 127.0.0.1 written with blocking sockets: one accept thread, one thread per connection.
/// `echo` writes back what it reads (`corruptingEcho` changes the byte at one stream offset); `sink` only reads;
/// `blast` sends `blastBytes` of the `i % 251` pattern (with byte `corruptAt`
/// replaced by a wrong one, if set), then closes.
final class PlainServer: @unchecked Sendable {
    enum Mode: Sendable {
        case echo
        case corruptingEcho(at: Int)
        case blast(bytes: Int, corruptAt: Int?)
        case sink
        /// Echoes for `seconds` after accepting (and at least one answer), then reads and never answers again
        /// (`stallStarts`: when each connection first got bytes it did not answer).
        case echoThenStall(seconds: Double)
        /// Pairs connections as they arrive (1st with 2nd, ...): what one sends is echoed to the other.
        case swappingEcho
    }

    let port: Int
    private let listenFD: Int32
    private let mode: Mode
    private let state = Mutex<(fds: [Int32], threads: [pthread_t], accepted: Int)>(([], [], 0))
    private var acceptThread = pthread_t()

    /// After `acceptLimit` connections the listener is shut down: later connects are refused.
    private let acceptLimit: Int

    init(_ mode: Mode, acceptLimit: Int = .max) throws {
        self.mode = mode
        self.acceptLimit = acceptLimit
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(s, 1024) == 0 else { throw SystemError(errno: errno, call: "bind/listen") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listenFD = s
        acceptThread = startThread { [self] in acceptLoop() }
    }

    var target: String { "127.0.0.1:\(port)" }
    var accepted: Int { state.withLock { $0.accepted } }
    private let stalls = Mutex<[UInt64]>([])
    private let unpaired = Mutex<Int32?>(nil)
    /// CLOCK_MONOTONIC nanoseconds at which each stalling connection got its first unanswered byte.
    var stallStarts: [UInt64] { stalls.withLock { $0 } }

    private func acceptLoop() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return  // shut down
            }
            let count = state.withLock { s -> Int in
                s.accepted += 1
                s.fds.append(fd)
                return s.accepted
            }
            if case .swappingEcho = mode {
                if let other = unpaired.withLock({ p -> Int32? in
                    defer { p = p == nil ? fd : nil }
                    return p
                }) {
                    let a = startThread { [self] in relay(from: other, to: fd) }
                    let b = startThread { [self] in relay(from: fd, to: other) }
                    state.withLock { $0.threads += [a, b] }
                }
            } else {
                let t = startThread { [self] in serve(fd) }
                state.withLock { $0.threads.append(t) }
            }
            if count >= acceptLimit {
                shutdown(listenFD, Int32(SHUT_RDWR))
                return
            }
        }
    }

    private func serve(_ fd: Int32) {
        switch mode {
        case .swappingEcho:
            return  // relayed in pairs
        case .echo, .corruptingEcho:
            var corruptAt = -1
            if case .corruptingEcho(let at) = mode { corruptAt = at }
            var buffer = [UInt8](repeating: 0, count: 65536)
            var offset = 0
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                if (offset..<offset + n).contains(corruptAt) { buffer[corruptAt - offset] ^= 0xff }
                offset += n
                guard sendAll(fd, buffer[0..<n]) else { break }
            }
        case .echoThenStall(let seconds):
            let until = monotonicNanos() + UInt64(seconds * 1e9)
            var buffer = [UInt8](repeating: 0, count: 65536)
            var stalled = false
            var answered = false
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                if stalled { continue }
                let now = monotonicNanos()
                // Not before it has answered once: on a loaded machine the first request can come after `seconds`,
                // and a server that never answered is another case (`rateAndUnansweredAgainstAServerThatNeverAnswers`).
                if now >= until && answered {
                    stalled = true
                    stalls.withLock { $0.append(now) }
                    continue
                }
                guard sendAll(fd, buffer[0..<n]) else { break }
                answered = true
            }
        case .sink:
            var buffer = [UInt8](repeating: 0, count: 65536)
            while buffer.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 {}
        case .blast(let total, let corruptAt):
            var offset = 0
            while offset < total {
                let n = min(16384, total - offset)
                var chunk = (0..<n).map { UInt8((offset + $0) % 251) }
                if let c = corruptAt, (offset..<offset + n).contains(c) { chunk[c - offset] ^= 0xff }
                guard sendAll(fd, chunk[...]) else { break }
                offset += n
            }
            shutdown(fd, Int32(SHUT_WR))
            var sink = [UInt8](repeating: 0, count: 4096)
            while sink.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 {}
        }
    }

    private func relay(from source: Int32, to sink: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, 0) }
            if n <= 0 || !sendAll(sink, buffer[0..<n]) { break }
        }
    }

    private func sendAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var off = bytes.startIndex
        while off < bytes.endIndex {
            let n = bytes[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    /// Stops accepting, resets what is still connected, joins every thread, closes every descriptor.
    func stop() {
        shutdown(listenFD, Int32(SHUT_RDWR))
        pthread_join(acceptThread, nil)
        let (fds, threads) = state.withLock { ($0.fds, $0.threads) }
        for fd in fds { shutdown(fd, Int32(SHUT_RDWR)) }
        for t in threads { pthread_join(t, nil) }
        for fd in fds { close(fd) }
        close(listenFD)
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the clock the generator measures with).
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A loopback port with no listener (bound, read, released).
func unusedPort() -> Int {
    let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(s) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
            _ = bind(s, p, len)
            return getsockname(s, p, &len)
        }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A fresh directory under /tmp for files a test writes.
func temporaryDirectory() -> String {
    var template = Array("/tmp/zcr-load-test-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    return String(cString: path!)
}

/// The JSON object in `text`.
func jsonObject(_ text: String) throws -> [String: Any] {
    let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(value as? [String: Any])
}

typealias ProcessResult = ZcrRun

/// Runs the built `zcr` (see TestSupport's `Zcr`).
func runZcr(_ arguments: [String]) async throws -> ZcrRun { try await Zcr.run(arguments) }
