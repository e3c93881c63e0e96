// kv-server [PORT]: the line-protocol key-value server; SIGINT or SIGTERM drains it (5 s) and exits.
import Glibc
import KeyValue
import ServiceLifecycle
import ZeroCopyReactor

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 7400 : 7400
let server = try KeyValueServer()

struct Serving: Service {
    let server: KeyValueServer
    let port: Int
    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await server.run(host: "0.0.0.0", port: port) { print("kv-server listening on \($0)") }
        }
    }
}

// The pool first: on SIGTERM the server's handlers are cancelled first (replies in progress are reset), then the
// pool drains and stops.
let group = ServiceGroup(services: [server.pool, Serving(server: server, port: port)],
                         gracefulShutdownSignals: [.sigterm, .sigint], logger: .init(label: "kv-server"))
try await group.run()
