// fanout-server [PORT]: every line any client sends goes to every client, from one buffer.
import FanOut
import Glibc

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 7100 : 7100
let server = try FanOutServer()
print("fan-out server listening on \(try server.start(port: port))")
while true { pause() }
