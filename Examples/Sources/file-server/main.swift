// file-server FILE [PORT]: sends FILE to every connection with sendfile, then closes.
import FileServer
import Glibc

guard CommandLine.arguments.count > 1 else {
    print("usage: file-server FILE [PORT]")
    exit(2)
}
let port = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 7200 : 7200
let server = try FileServer(path: CommandLine.arguments[1])
print("serving \(server.path) (\(server.size) bytes) on \(try server.start(port: port))")
while true { pause() }
