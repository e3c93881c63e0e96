// file-server FILE [PORT]: sends FILE to every connection with sendfile, then closes.
// PROFILE_SOCKET=PATH: a profiling endpoint for `zcr profile --attach PATH` (and the iovec checks on).
import FileServer
import Glibc
import ZeroCopyProfiler

guard CommandLine.arguments.count > 1 else {
    print("usage: file-server FILE [PORT]")
    exit(2)
}
let port = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 7200 : 7200
let profileSocket = getenv("PROFILE_SOCKET").map { String(cString: $0) }
let server = try FileServer(path: CommandLine.arguments[1], verifyIovecs: profileSocket != nil)
let endpoint = try profileSocket.map { try ProfilingEndpoint(pool: server.pool, path: $0) }
print("serving \(server.path) (\(server.size) bytes) on \(try server.start(port: port))")
while true { pause() }
