// fanout-server [PORT]: every line any client sends goes to every client, from one buffer.
// PROFILE_SOCKET=PATH: a profiling endpoint for `zcr profile --attach PATH` (and the iovec checks on).
import FanOut
import Glibc
import ZeroCopyProfiler

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 7100 : 7100
let profileSocket = getenv("PROFILE_SOCKET").map { String(cString: $0) }
let server = try FanOutServer(verifyIovecs: profileSocket != nil)
let endpoint = try profileSocket.map { try ProfilingEndpoint(pool: server.pool, path: $0) }
print("fan-out server listening on \(try server.start(port: port))")
while true { pause() }
