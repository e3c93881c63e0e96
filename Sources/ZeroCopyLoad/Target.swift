// Turns `--target HOST:PORT` into a socket address: numeric IPv4/IPv6 and "localhost" directly, other names
// through getaddrinfo, once, before any connection. Never connects.
import Glibc
import ZeroCopyReactor

enum Target {
    static func resolve(_ text: String) throws(LoadError) -> SocketAddress {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw LoadError("--target '\(text)' is not HOST:PORT")
        }
        guard (1...65535).contains(port) else {
            throw LoadError("--target '\(text)': port \(port) is not in 1...65535")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw LoadError("--target '\(text)' has no host") }
        if let address = try? SocketAddress(host: host, port: port) { return address }
        let numeric = try lookUp(host, target: text)
        do {
            return try SocketAddress(host: numeric, port: port)
        } catch {
            throw LoadError("--target '\(text)': \(error)")
        }
    }

    /// The first address getaddrinfo gives for `name`, as numeric text.
    private static func lookUp(_ name: String, target: String) throws(LoadError) -> String {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, nil, &hints, &result)
        guard rc == 0, let first = result else {
            let why = String(cString: gai_strerror(rc))
            throw LoadError("--target '\(target)': cannot resolve '\(name)': \(why)")
        }
        defer { freeaddrinfo(result) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        if first.pointee.ai_family == AF_INET6 {
            first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                var a = $0.pointee.sin6_addr
                _ = inet_ntop(AF_INET6, &a, &buffer, socklen_t(buffer.count))
            }
        } else {
            first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                var a = $0.pointee.sin_addr
                _ = inet_ntop(AF_INET, &a, &buffer, socklen_t(buffer.count))
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
