// IPv4 and IPv6 socket addresses: parsed from text, printed as text, handed to bind/connect.
// Holds a sockaddr_storage by value; no pointers escape `withSockAddr`.
import Glibc

public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    private var storage: sockaddr_storage

    init(storage: sockaddr_storage) {
        self.storage = storage
    }

    /// True for the any-address (0.0.0.0 or ::): a socket bound to it has a concrete local address per connection.
    var isWildcard: Bool {
        withUnsafePointer(to: storage) { p in
            if family == AF_INET {
                return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr == 0 }
            }
            return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                withUnsafeBytes(of: sin6.pointee.sin6_addr) { $0.allSatisfy { $0 == 0 } }
            }
        }
    }

    /// Parses a numeric IPv4 or IPv6 address ("127.0.0.1", "::1"); "localhost" means 127.0.0.1.
    public init(host: String, port: Int) throws(ReactorError) {
        guard (0...65535).contains(port) else { throw .invalidArgument("port \(port) is not in 0...65535") }
        var storage = sockaddr_storage()
        let name = host == "localhost" ? "127.0.0.1" : host.trimmingBrackets
        var ok = false
        if name.contains(":") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                    sin6.pointee.sin6_port = UInt16(port).bigEndian
                    ok = inet_pton(AF_INET6, name, &sin6.pointee.sin6_addr) == 1
                }
            }
        } else {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    sin.pointee.sin_family = sa_family_t(AF_INET)
                    sin.pointee.sin_port = UInt16(port).bigEndian
                    ok = inet_pton(AF_INET, name, &sin.pointee.sin_addr) == 1
                }
            }
        }
        guard ok else { throw .invalidArgument("'\(host)' is not a numeric IPv4 or IPv6 address") }
        self.storage = storage
    }

    /// Parses "HOST:PORT" or "[V6]:PORT".
    public init(parsing text: String) throws(ReactorError) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw .invalidArgument("'\(text)' is not HOST:PORT")
        }
        try self.init(host: String(text[..<colon]), port: port)
    }

    public var family: Int32 { Int32(storage.ss_family) }

    public var port: Int {
        get {
            withUnsafePointer(to: storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
        }
        set {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port = UInt16(newValue).bigEndian }
            }
        }
    }

    public var host: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        withUnsafePointer(to: storage) { p in
            if family == AF_INET6 {
                p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                    var addr = s.pointee.sin6_addr
                    _ = inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count))
                }
            } else {
                p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in
                    var addr = s.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count))
                }
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String { family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        let len = family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        return withUnsafePointer(to: storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(len)) }
        }
    }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool { a.description == b.description }
    public func hash(into hasher: inout Hasher) { hasher.combine(description) }
}

extension String {
    fileprivate var trimmingBrackets: String {
        hasPrefix("[") && hasSuffix("]") ? String(dropFirst().dropLast()) : self
    }
}
