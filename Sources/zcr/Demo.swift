// `zcr demo`: the README's main job on loopback. Starts the echo server in this process, runs a short load against
// it (1,000 connections, echo, 10 seconds), then the seed-large allocation profile, and prints both summaries and the
// path of the HTML report. Exit status 1 when the load failed or the profile's verdict was not zero copy.
import ArgumentParser
import Glibc
import ZeroCopyLoad
import ZeroCopyProfiler
import ZeroCopyReactor

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Server, load and allocation profile on loopback, in one command (under a minute).")

    @Option(help: "Load: connections.") var connections = 1000
    @Option(help: "Load: measured seconds.") var duration = 10.0
    @Option(help: "Load: message size in bytes.") var messageBytes = 4096
    @Option(help: "Profile: payload of the one write, in MiB.") var payloadMib = 1000
    @Option(help: "Where the reports go (created if missing).") var output = "zcr-demo"

    func validate() throws {
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
        guard duration > 0 else { throw ValidationError("--duration must be positive") }
        guard messageBytes >= 1 else { throw ValidationError("--message-bytes must be at least 1") }
        guard payloadMib >= 1 else { throw ValidationError("--payload-mib must be at least 1") }
    }

    func run() throws {
        // The profile's verdict needs the memcpy counter linked into zcr (as `zcr profile` and `zcr serve` do).
        LinkedMemcpyCounter.register()
        mkdir(output, 0o755)
        var failed = false

        // 1. The server: `zcr serve --mode echo`, in this process, one loop.
        let server = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        let echo = BuiltinServer(mode: .echo)
        let address = try server.listen(host: "127.0.0.1", port: 0, handler: echo.handler(for:))
        Output.line("== zcr serve --mode echo: listening on \(address) (1 loop, in this process)")

        // 2. The load: 1,000 connections echoing, closed loop.
        var load = LoadConfiguration(target: "\(address)", mode: .echo, threads: 1)
        load.connections = connections
        load.duration = .milliseconds(Int64(duration * 1000))
        load.messageBytes = messageBytes
        load.extraDescriptors = connections + 64  // the server's side of every connection is in this process too
        Output.line("== zcr load --target \(address) --mode echo --connections \(connections) "
            + "--message-bytes \(messageBytes) --duration \(Output.fixed(duration, 0))s --threads 1")
        do {
            let report = try LoadGenerator(configuration: load).run { Output.line($0.line) }
            Output.line(report.summary)
            try report.writeJSON(to: "\(output)/load.json")
            if let why = report.failure {
                Output.line("load failed: \(why)")
                failed = true
            }
        } catch {
            Output.line("load failed: \(error)")
            failed = true
        }
        server.shutdown()
        let counters = server.counters()
        let copied = counters.reduce(0) { $0 + $1.bytesCopied }
        let written = counters.reduce(0) { $0 + $1.write.bytesWritten }
        Output.line("server: echoed \(written) bytes, copied \(copied) bytes, "
            + "\(counters.reduce(0) { $0 + $1.connectionsAccepted }) connections accepted")

        // 3. The profile: the seed's 1000 MiB payload written with one write, proved uncopied.
        Output.line("== zcr profile --scenario seed-large --payload-mib \(payloadMib)")
        var options = ProfileOptions(scenario: .seedLarge)
        options.payloadBytes = payloadMib << 20
        do {
            let profile = try ProfileRunner.run(options) { Output.line($0.progressLine) }
            Output.line(profile.summary)
            try write(profile.json(), to: "\(output)/profile.json")
            try write(profile.html(), to: "\(output)/profile.html")
            Output.line("HTML report: \(output)/profile.html (JSON: \(output)/profile.json, load: \(output)/load.json)")
            if !profile.zeroCopy { failed = true }
        } catch {
            Output.line("profile failed: \(error)")
            failed = true
        }
        if failed { throw ExitCode(1) }
    }

    private func write(_ text: String, to path: String) throws {
        guard let file = fopen(path, "w") else { throw ValidationError("cannot write \(path)") }
        defer { fclose(file) }
        var text = text
        _ = text.withUTF8 { fwrite($0.baseAddress, 1, $0.count, file) }
    }
}
