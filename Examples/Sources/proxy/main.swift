// proxy UPSTREAM_HOST:PORT [PORT]: forwards every connection to UPSTREAM without copying.
// PROFILE_SOCKET=PATH: a profiling endpoint for `zcr profile --attach PATH` (and the iovec checks on).
import Glibc
import Proxy
import ZeroCopyProfiler
import ZeroCopyReactor

guard CommandLine.arguments.count > 1 else {
    print("usage: proxy UPSTREAM_HOST:PORT [PORT]")
    exit(2)
}
let port = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 7300 : 7300
let profileSocket = getenv("PROFILE_SOCKET").map { String(cString: $0) }
let proxy = try Proxy(
    upstream: try SocketAddress(parsing: CommandLine.arguments[1]), verifyIovecs: profileSocket != nil)
let endpoint = try profileSocket.map { try ProfilingEndpoint(pool: proxy.pool, path: $0) }
print("proxy to \(proxy.upstream) listening on \(try proxy.start(port: port))")
while true { pause() }
