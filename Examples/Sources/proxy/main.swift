// proxy UPSTREAM_HOST:PORT [PORT]: forwards every connection to UPSTREAM without copying.
import Glibc
import Proxy
import ZeroCopyReactor

guard CommandLine.arguments.count > 1 else {
    print("usage: proxy UPSTREAM_HOST:PORT [PORT]")
    exit(2)
}
let port = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 7300 : 7300
let proxy = try Proxy(upstream: try SocketAddress(parsing: CommandLine.arguments[1]))
print("proxy to \(proxy.upstream) listening on \(try proxy.start(port: port))")
while true { pause() }
