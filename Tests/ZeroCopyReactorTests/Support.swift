// Test support: a lifetime tracker for slices, a blocking raw-socket peer written without the library, a waiter
// with a timeout (a hang fails the test instead of stalling the suite), and deterministic random bytes.
@_exported import TestSupport
import Dispatch
import Glibc
import Synchronization
import Testing
@testable import ZeroCopyReactor

/// Counts each slice's events by tag and records any tag released twice.
final class LifetimeTracker: SliceObserver, @unchecked Sendable {
    private struct State {
        var written: [UInt64: Int] = [:]
        var released: [UInt64: Int] = [:]
        var errors: [UInt64: ReactorError] = [:]
    }
    private let state = Locked(State())
    private let allReleased = DispatchSemaphore(value: 0)
    private let expected: Int

    init(expecting expected: Int = 0) { self.expected = expected }

    func sliceWritten(tag: UInt64, byteCount: Int) {
        state.withLock { $0.written[tag, default: 0] += 1 }
    }

    func sliceReleased(tag: UInt64, error: ReactorError?) {
        let count = state.withLock { s -> Int in
            s.released[tag, default: 0] += 1
            if let error { s.errors[tag] = error }
            return s.released.values.reduce(0, +)
        }
        if count == expected { allReleased.signal() }
    }

    var releasedCount: Int { state.withLock { $0.released.values.reduce(0, +) } }
    var writtenCount: Int { state.withLock { $0.written.values.reduce(0, +) } }
    var releasedTwice: [UInt64] { state.withLock { $0.released.filter { $0.value > 1 }.map(\.key) } }
    var errorCount: Int { state.withLock { $0.errors.count } }
    func error(_ tag: UInt64) -> ReactorError? { state.withLock { $0.errors[tag] } }
    func released(_ tag: UInt64) -> Int { state.withLock { $0.released[tag] ?? 0 } }

    /// Waits until `expected` releases happened; false on timeout.
    func waitAll(seconds: Int = 20) -> Bool {
        allReleased.wait(timeout: .now() + .seconds(seconds)) == .success
    }

    func slice(_ bytes: [UInt8], tag: UInt64) -> Slice {
        var s = Slice(bytes)
        s.tag = tag
        s.observer = self
        return s
    }
}

/// A one-shot event with a timeout.
final class Signal: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func fire() { semaphore.signal() }
    func wait(seconds: Int = 20) -> Bool { semaphore.wait(timeout: .now() + .seconds(seconds)) == .success }
}

/// A value set once from a loop thread and read by the test.
final class Box<T: Sendable>: @unchecked Sendable {
    private let value = Locked<T?>(nil)
    let signal = Signal()
    func set(_ v: T) {
        value.withLock { $0 = v }
        signal.fire()
    }
    func wait(seconds: Int = 20) -> T? {
        guard signal.wait(seconds: seconds) else { return nil }
        return value.withLock { $0 }
    }
}

/// A plain blocking TCP socket, written in the test with Glibc only: the independent peer.
final class RawPeer: @unchecked Sendable {
    private(set) var fd: Int32

    init(connectingTo address: SocketAddress, receiveBuffer: Int32? = nil) throws {
        let s = socket(address.family, Int32(SOCK_STREAM.rawValue), 0)
        if let size = receiveBuffer {
            var v = size
            setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, 4)
        }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        fd = s
        let rc = address.withSockAddr { Glibc.connect(s, $0, $1) }
        if rc != 0 { throw SystemError(errno: errno, call: "connect") }
    }

    init(adopting fd: Int32) { self.fd = fd }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// Reads until EOF (or `limit` bytes), `chunk` bytes per read.
    func readAll(limit: Int = Int.max, chunk: Int = 65536) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: chunk)
        while out.count < limit {
            let n = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, min(chunk, limit - out.count), 0) }
            if n <= 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    func read(exactly count: Int) -> [UInt8] { readAll(limit: count) }

    /// Closes with a reset (SO_LINGER 0, then close).
    func reset() {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        Glibc.close(fd)
        fd = -1
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads until the stream ends: the bytes read, and 0 for a clean end (FIN) or the errno that ended it
    /// (ECONNRESET for a reset: how a peer tells a reply cut short from a complete one).
    func readToEnd() -> (bytes: Int, end: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { total += n; continue }
            if n < 0 && errno == EINTR { continue }
            return (total, n == 0 ? 0 : errno)
        }
    }
}

/// A blocking listener for client-side tests.
final class RawListener: @unchecked Sendable {
    private(set) var fd: Int32
    let address: SocketAddress

    init() throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let any = try SocketAddress(host: "127.0.0.1", port: 0)
        _ = any.withSockAddr { Glibc.bind(s, $0, $1) }
        Glibc.listen(s, 128)
        fd = s
        address = try Sys.localAddress(s)
    }

    func accept() -> RawPeer {
        RawPeer(adopting: Glibc.accept(fd, nil, nil))
    }

    /// Closes now (nobody listens on the address any more); the deinit then closes nothing. Closing the number a
    /// second time would close whatever socket a test running beside this one got next.
    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

/// A pool with one listener whose connections get handlers from `make`; shut down by the caller.
func makeServer(loops: Int = 1, configure: (inout ReactorConfiguration) -> Void = { _ in },
                _ make: @escaping @Sendable (Connection) -> any ConnectionHandler) throws -> (ReactorPool, SocketAddress) {
    var config = ReactorConfiguration(loops: loops)
    configure(&config)
    let pool = try ReactorPool(configuration: config)
    let address = try pool.listen(host: "127.0.0.1", port: 0, handler: make)
    return (pool, address)
}

/// A server whose every connection gets what `reply` writes when it opens, and is then closed gracefully.
func makeReplyingServer(configure: (inout ReactorConfiguration) -> Void = { _ in },
                        _ reply: @escaping @Sendable (Connection) -> Void) throws -> (ReactorPool, SocketAddress) {
    try makeServer(configure: configure) { _ in
        let h = ClosureHandler()
        h.onOpen = { c in
            reply(c)
            c.close()
        }
        return h
    }
}

/// A one-loop server, a plain peer connected to it, and the server's side of that connection.
func connectedPair(configure: (inout ReactorConfiguration) -> Void = { _ in }) throws -> (ReactorPool, RawPeer, Connection) {
    let server = Box<Connection>()
    let (pool, address) = try makeServer(configure: configure) { _ in
        let h = ClosureHandler()
        h.onOpen = { server.set($0) }
        return h
    }
    let peer = try RawPeer(connectingTo: address)
    guard let connection = server.wait() else {
        pool.shutdown()
        throw ReactorError.connectTimeout
    }
    return (pool, peer, connection)
}

/// Ends a test's `serve`: cancels its task, waits for it to return (no child task left behind), then shuts the
/// pool down without blocking a cooperative thread.
func stopServing(_ server: Task<Void, any Error>, _ pool: ReactorPool) async {
    server.cancel()
    _ = try? await server.value
    await pool.shutdownGracefully()
}

/// A handler made of closures, for tests.
final class ClosureHandler: ConnectionHandler, @unchecked Sendable {
    var onOpen: (Connection) -> Void = { _ in }
    var onRead: (Connection, InboundBytes) -> Void = { _, _ in }
    var onEnd: ((Connection) -> Void)?
    var onWritability: (Connection, Bool) -> Void = { _, _ in }
    var onClose: (Connection, ReactorError?) -> Void = { _, _ in }

    func connectionOpened(_ connection: Connection) { onOpen(connection) }
    func connection(_ connection: Connection, didRead bytes: InboundBytes) { onRead(connection, bytes) }
    func connectionDidReachEnd(_ connection: Connection) {
        if let onEnd { onEnd(connection) } else { connection.close() }
    }
    func connection(_ connection: Connection, writabilityChanged isWritable: Bool) { onWritability(connection, isWritable) }
    func connectionClosed(_ connection: Connection, error: ReactorError?) { onClose(connection, error) }
}

/// A value set once from any thread and awaited by an async test, so test bodies never block Swift concurrency's
/// few threads (on 2 cores a blocked one can starve the very task being waited for). `.timeLimit` bounds a hang.
final class AsyncValue<T: Sendable>: @unchecked Sendable {
    private struct State {
        var value: T?
        var waiters: [Int: CheckedContinuation<T, any Error>] = [:]
        var nextID = 0
    }
    private let state = Locked(State())

    func set(_ v: T) {
        let waiters = state.withLock { s -> [CheckedContinuation<T, any Error>] in
            s.value = v
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume(returning: v) }
    }

    /// The value once set. Cancelling the waiting task (as `.timeLimit` does) ends the wait with CancellationError,
    /// so a test that waits for something that never happens fails instead of hanging the whole run.
    var value: T {
        get async throws {
            let id = state.withLock { s -> Int in
                s.nextID += 1
                return s.nextID
            }
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
                    let v = state.withLock { s -> T? in
                        if let v = s.value { return v }
                        s.waiters[id] = c
                        return nil
                    }
                    if let v { c.resume(returning: v) }
                    if Task.isCancelled { cancel(id) }  // cancelled before the waiter was registered
                }
            } onCancel: {
                cancel(id)
            }
        }
    }

    private func cancel(_ id: Int) {
        let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.resume(throwing: CancellationError())
    }
}

