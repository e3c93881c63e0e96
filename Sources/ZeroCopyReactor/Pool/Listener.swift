// One loop's listening socket. Every loop binds its own socket to the same address with SO_REUSEPORT and accepts
// on it itself, so an accepted connection starts and ends on the loop that accepted it.
//
// SO_REUSEPORT lets any socket of the same effective UID that also sets it bind the same address, and the kernel then
// spreads new connections over all of them: a second server of the same user would silently take part of the traffic.
// So, unless `sharePortWithOtherProcesses` is set, loop 0's listener first binds a probe socket to the address
// WITHOUT SO_REUSEPORT (SO_REUSEADDR does not let a bind pass a listening socket on Linux): EADDRINUSE there means
// another socket holds the port, and the pool's listen fails with it. Port 0 needs no probe (the kernel picks a free
// port). The window that remains: a foreign socket that itself sets SO_REUSEPORT and binds the port after the probe
// closed (or after our sockets are listening) still joins the group, because the kernel checks only the effective
// UID; a socket without SO_REUSEPORT cannot, its bind fails.
import Glibc

final class Listener: Selectable {
    private var descriptor: FileDescriptor?
    private let fd: Int32
    private unowned let loop: EventLoop
    private let factory: @Sendable (Connection) -> any ConnectionHandler
    private var registration: Registration?
    /// The port this listener is bound to (shared by the pool's listeners for one address).
    let port: Int
    /// The address it is bound to, with its port.
    private let bound: SocketAddress

    /// Creates, binds and listens (on the calling thread, so errors reach the caller). `register` is loop only.
    /// `ReactorPool.listen` creates loop 0's listener first, so the probe runs before any of the pool's own binds.
    init(address: SocketAddress, loop: EventLoop,
         factory: @escaping @Sendable (Connection) -> any ConnectionHandler) throws(SystemError) {
        if loop.index == 0 && address.port != 0 && !loop.configuration.sharePortWithOtherProcesses {
            try Self.probeExclusive(address)
        }
        let socket = try Sys.socket(family: address.family)
        try Sys.setOption(socket.raw, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1)
        try Sys.setOption(socket.raw, level: SOL_SOCKET, name: SO_REUSEPORT, value: 1)
        try Sys.bind(socket.raw, address)
        try Sys.listen(socket.raw, backlog: loop.configuration.backlog)
        fd = socket.raw
        port = address.port != 0 ? address.port : ((try? Sys.localAddress(socket.raw).port) ?? 0)
        var bound = address
        bound.port = port
        self.bound = bound
        descriptor = consume socket
        self.loop = loop
        self.factory = factory
    }

    /// Binds and closes a socket without SO_REUSEPORT on `address`: throws bind's EADDRINUSE when any other socket
    /// (listening, or bound without SO_REUSEADDR) holds the port. A socket that was bound and never listened leaves
    /// nothing behind when it closes (no TIME_WAIT), so the real binds that follow find the port free.
    static func probeExclusive(_ address: SocketAddress) throws(SystemError) {
        let probe = try Sys.socket(family: address.family)
        try Sys.setOption(probe.raw, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1)
        try Sys.bind(probe.raw, address)
        probe.close()
    }

    var localAddress: SocketAddress {
        get throws(SystemError) { try Sys.localAddress(fd) }
    }

    /// Starts accepting on the loop (loop only). Refused once the loop is shutting down; an epoll error reaches
    /// the caller.
    func register() throws(ReactorError) {
        loop.preconditionInLoop()
        guard !loop.isStopping else { throw .poolShutdown }
        do {
            registration = try loop.register(fd: fd, events: Epoll.input, self)
        } catch {
            throw .system(error)
        }
        loop.listeners.append(self)
    }

    func ready(events: UInt32) {
        // Up to 64 accepts per wake-up, so a connection storm cannot starve the loop's other connections.
        for _ in 0..<64 {
            let accepted: Sys.Accepted?
            do {
                accepted = try Sys.accept(fd)
            } catch {
                loop.counters.acceptErrors += 1
                loop.configuration.logger.warning("accept failed", metadata: ["error": "\(error)", "loop": "\(loop.index)"])
                if error.errno == EMFILE || error.errno == ENFILE || error.errno == ENOBUFS || error.errno == ENOMEM {
                    // Out of descriptors: stop accepting for 100 ms instead of spinning on a level-triggered event.
                    pauseAccepting()
                    return
                }
                continue
            }
            guard let accepted = consume accepted else { return }
            let raw = accepted.descriptor.raw
            if let admission = loop.admission, !admission.admit() {
                // The pool is at maxConnections: closed at once (a reset, so no TIME_WAIT is left here), counted.
                try? Sys.setResetOnClose(raw)
                accepted.descriptor.close()
                loop.counters.connectionsRefused += 1
                continue
            }
            try? Sys.setOption(raw, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1)
            // The local address is the listener's, unless it listens on the any-address (then ask the kernel).
            let local = bound.isWildcard ? try? Sys.localAddress(raw) : bound
            let peer = accepted.peer
            let connection = Connection(
                id: Connection.nextID(), descriptor: accepted.descriptor, loop: loop, connecting: false,
                remote: peer, local: local)
            connection.admitted = loop.admission != nil
            connection.start(handler: factory(connection), connectTimeout: nil)
        }
    }

    private func pauseAccepting() {
        guard let registration else { return }
        try? loop.modify(fd: fd, registration, events: 0)
        loop.scheduleTimer(after: 100_000_000) { [self] in
            if let registration = self.registration { try? loop.modify(fd: fd, registration, events: Epoll.input) }
        }
    }

    func close() {
        if let registration { loop.deregister(fd: fd, registration) }
        registration = nil
        if let d = descriptor.take() { d.close() }
    }
}
