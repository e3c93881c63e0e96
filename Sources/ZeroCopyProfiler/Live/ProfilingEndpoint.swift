// The profiling endpoint an embedding server adds in one line: a Unix-domain socket (mode 0600) on a thread of its
// own that answers snapshots of the pool's reactor threads (protocol: docs/profile.md, "The profiling endpoint").
// It never runs anything on the loops after set-up; it refuses a path a live endpoint holds and replaces a stale
// one; it never unlinks anything that is not the socket it bound.
import Glibc
import Synchronization
@_spi(CopyControl) public import ZeroCopyReactor

/// Why an endpoint could not start.
public enum ProfilingEndpointError: Error, CustomStringConvertible, Equatable {
    /// Another live endpoint (or any listening socket) answers at the path.
    case inUse(path: String)
    /// Something that is not a socket is at the path: it is left alone.
    case notASocket(path: String)
    case pathTooLong(path: String, limit: Int)
    case system(path: String, call: String, errno: Int32)

    public var description: String {
        switch self {
        case .inUse(let p): "\(p) is held by a live endpoint (a connect succeeded); stop it or choose another path"
        case .notASocket(let p): "\(p) exists and is not a socket; refusing to replace it"
        case .pathTooLong(let p, let limit): "\(p) is longer than a Unix socket path can be (\(limit) bytes)"
        case .system(let p, let call, let e): "\(p): \(call) failed: \(String(cString: strerror(e)))"
        }
    }
}

/// Serves snapshots of `pool` at `path` until `close()` (or deinit). Close it before the pool shuts down: a
/// closed endpoint stops reading the loops (a stopped loop's jemalloc counters are never read either way).
///
/// ```swift
/// let endpoint = try ProfilingEndpoint(pool: pool, path: "/run/myserver/profile.sock")
/// // zcr profile --attach /run/myserver/profile.sock --duration 10
/// ```
public final class ProfilingEndpoint: Sendable {
    public let path: String
    /// The file mode the socket was created with (0600).
    public static let mode: UInt32 = 0o600
    private let server: EndpointServer
    private let thread: Mutex<UInt?>

    /// Binds `path` and starts serving.
    public init(pool: ReactorPool, path: String) throws(ProfilingEndpointError) {
        self.path = path
        let fd = try Self.bind(path)
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else {
            let e = errno
            Glibc.close(fd)
            unlink(path)
            throw .system(path: path, call: "pipe2", errno: e)
        }
        for p in pipeFDs { _ = fcntl(p, F_SETFD, FD_CLOEXEC) }
        var st = stat()
        _ = lstat(path, &st)
        let meter = LiveMeter(pool: pool)
        let server = EndpointServer(
            listenFD: fd, wakeRead: pipeFDs[0], wakeWrite: pipeFDs[1], path: path, inode: (st.st_dev, st.st_ino),
            meter: meter, copyControl: pool.configuration.copyControl?.rawValue)
        self.server = server
        thread = Mutex(PosixThread.spawn(name: "zcr-profile", joinable: true) { server.serve() })
    }

    /// Stops serving, closes the socket and removes its path (if it is still this endpoint's). Idempotent.
    public func close() {
        guard let t = thread.withLock({ t -> UInt? in
            defer { t = nil }
            return t
        }) else { return }
        server.stop()
        PosixThread.join(t)
        server.release()
    }

    deinit { close() }

    /// Refuses a live path, replaces a stale socket, binds a new one with mode 0600 and listens.
    private static func bind(_ path: String) throws(ProfilingEndpointError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let limit = MemoryLayout.size(ofValue: address.sun_path) - 1
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= limit else { throw .pathTooLong(path: path, limit: limit) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        func connectOrBind(_ fd: Int32, connect: Bool) -> Int32 {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect ? Glibc.connect(fd, $0, length) : Glibc.bind(fd, $0, length)
                }
            }
        }
        func newSocket() throws(ProfilingEndpointError) -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw .system(path: path, call: "socket", errno: errno) }
            return fd
        }

        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw .notASocket(path: path) }
            let probe = try newSocket()
            let rc = connectOrBind(probe, connect: true)
            let e = errno
            Glibc.close(probe)
            if rc == 0 { throw .inUse(path: path) }
            // Refused: nobody listens, the socket is stale (a server that died). Anything else is not ours to judge.
            guard e == ECONNREFUSED else { throw .system(path: path, call: "connect", errno: e) }
            guard unlink(path) == 0 || errno == ENOENT else { throw .system(path: path, call: "unlink", errno: errno) }
        }
        let fd = try newSocket()
        // Nobody can connect between bind and listen (connect is refused), and chmod comes before listen: the
        // socket is never reachable with a wider mode than 0600.
        guard connectOrBind(fd, connect: false) == 0 else {
            let e = errno
            Glibc.close(fd)
            if e == EADDRINUSE { throw .inUse(path: path) }
            throw .system(path: path, call: "bind", errno: e)
        }
        guard chmod(path, mode_t(ProfilingEndpoint.mode)) == 0, listen(fd, 16) == 0 else {
            let e = errno
            Glibc.close(fd)
            unlink(path)
            throw .system(path: path, call: "chmod/listen", errno: e)
        }
        return fd
    }
}

/// The serving thread's side: a poll loop over the listening socket, a wake pipe and up to 16 clients, each sending
/// request lines and getting one line of JSON back per request.
final class EndpointServer: @unchecked Sendable {
    // Set once in init; the fds are closed by `release()` only after the serving thread was joined.
    let listenFD: Int32
    let wakeRead: Int32
    let wakeWrite: Int32
    let path: String
    let inode: (dev_t, ino_t)
    let meter: LiveMeter
    let copyControl: String?
    static let maxClients = 16
    static let maxLine = 256

    init(
        listenFD: Int32, wakeRead: Int32, wakeWrite: Int32, path: String, inode: (dev_t, ino_t), meter: LiveMeter,
        copyControl: String?
    ) {
        self.listenFD = listenFD
        self.wakeRead = wakeRead
        self.wakeWrite = wakeWrite
        self.path = path
        self.inode = inode
        self.meter = meter
        self.copyControl = copyControl
    }

    func stop() {
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)
    }

    /// After the thread ended: close everything and remove the path if it is still the socket bound here.
    func release() {
        close(listenFD)
        close(wakeRead)
        close(wakeWrite)
        var st = stat()
        if lstat(path, &st) == 0, st.st_dev == inode.0, st.st_ino == inode.1 { unlink(path) }
    }

    private struct Client {
        var fd: Int32
        var pending: [UInt8] = []
    }

    func serve() {
        var clients: [Client] = []
        while true {
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            fds.append(pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0))
            for c in clients { fds.append(pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)) }
            let n = poll(&fds, nfds_t(fds.count), -1)
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            if fds[0].revents != 0 { break }
            let polled = clients.count  // a client accepted below was not polled yet
            if fds[1].revents & Int16(POLLIN) != 0 {
                let fd = accept(listenFD, nil, nil)
                if fd >= 0 {
                    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                    if clients.count >= Self.maxClients {
                        answer(fd, #"{"error":"too many clients"}"#)
                        close(fd)
                    } else {
                        var timeout = timeval(tv_sec: 2, tv_usec: 0)
                        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                        clients.append(Client(fd: fd))
                    }
                }
            }
            var ended: [Int] = []
            for i in 0..<polled where fds[i + 2].revents != 0 {
                if !receive(&clients[i]) { ended.append(i) }
            }
            for i in ended.reversed() {
                close(clients[i].fd)
                clients.remove(at: i)
            }
        }
        for c in clients { close(c.fd) }
    }

    /// Reads what a client sent and answers each complete line; false when the client is done.
    private func receive(_ client: inout Client) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = buffer.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n < 0 { return errno == EAGAIN || errno == EINTR }
        if n == 0 { return false }
        client.pending += buffer[0..<n]
        while let newline = client.pending.firstIndex(of: 0x0A) {
            let line = String(decoding: client.pending[..<newline], as: UTF8.self)
            client.pending.removeSubrange(...newline)
            if !answer(client.fd, respond(to: line)) { return false }
        }
        if client.pending.count > Self.maxLine {
            answer(client.fd, #"{"error":"request line too long"}"#)
            return false
        }
        return true
    }

    /// The answer to one request line.
    func respond(to raw: String) -> String {
        let request = raw.hasSuffix("\r") ? String(raw.dropLast()) : raw
        switch request {
        case "snapshot": return meter.snapshotJSON(copyControl: copyControl)
        case "reset-peak": return #"{"reset_peak":\#(ProcessMemory.resetPeak())}"#
        default:
            var quoted = ""
            JSONValue.quote("unknown request \(request.prefix(64)): send snapshot or reset-peak", into: &quoted)
            return #"{"error":\#(quoted)}"#
        }
    }

    /// Sends `line` and a newline; false if the client cannot take it.
    @discardableResult
    private func answer(_ fd: Int32, _ line: String) -> Bool {
        let bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
}
