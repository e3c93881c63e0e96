// Failures the user must see as one clear line: refused connections, too few connections, bad input (through
// the configuration and through the `zcr` binary, which must print exactly one line on stderr and exit non-zero).
import Foundation
import Testing

@testable import ZeroCopyLoad

extension LoadRuns {
    @Suite struct ErrorTests {
        @Test func refusedConnectionsAreCountedAndFailTheRun() async throws {
            let port = unusedPort()
            let r = try await runLoad({ c in c.connections = 5 }, target: "127.0.0.1:\(port)")
            #expect(r.connectionsEstablished == 0)
            #expect(r.connectErrors == ["refused": 5])
            #expect(
                r.failure == "no connection to 127.0.0.1:\(port) was established: 5 refused (nothing listens there, "
                    + "or its backlog overflowed)")
            #expect(r.exitCode == 1)
            let json = try jsonObject(r.json)
            #expect((json["connect_errors"] as? [String: Int]) == ["refused": 5])
            #expect(json["connections_established"] as? Int == 0)
        }

        @Test func partialConnectionsFailUnlessAllowed() async throws {
            // The server takes two connections, then refuses; connects are 100 ms apart, so exactly two get in.
            let strict = try PlainServer(.echo, acceptLimit: 2)
            defer { strict.stop() }
            let r = try await runLoad(
                { c in
                    c.connections = 4
                    c.connectRate = 10
                }, target: strict.target)
            #expect(r.connectionsEstablished == 2)
            #expect(r.connectErrors == ["refused": 2])
            #expect(
                r.failure == "only 2 of 4 connections to \(strict.target) were established: 2 refused (nothing listens "
                    + "there, or its backlog overflowed) (--allow-partial accepts this)")
            #expect(r.durationSeconds == 0 && r.messagesSent == 0)  // no traffic after a failed connect phase

            let lenient = try PlainServer(.echo, acceptLimit: 2)
            defer { lenient.stop() }
            let allowed = try await runLoad(
                { c in
                    c.connections = 4
                    c.connectRate = 10
                    c.allowPartial = true
                }, target: lenient.target)
            #expect(allowed.failure == nil)
            #expect(allowed.connectionsEstablished == 2 && allowed.messagesReceived > 0)
            #expect(allowed.notes.contains("ran with 2 of 4 connections (--allow-partial)"))
        }

        @Test func noConnectionIsNeverAcceptedEvenWithAllowPartial() async throws {
            let port = unusedPort()
            let r = try await runLoad(
                { c in
                    c.connections = 3
                    c.allowPartial = true
                }, target: "127.0.0.1:\(port)")
            #expect(r.failure?.hasPrefix("no connection to 127.0.0.1:\(port) was established: 3 refused") == true)
        }

        @Test(
            arguments: [
                (
                    { @Sendable (c: inout LoadConfiguration) in c.connections = 0 },
                    "--connections must be at least 1, not 0"
                ),
                (
                    { @Sendable (c: inout LoadConfiguration) in c.messageBytes = 0 },
                    "--message-bytes must be at least 1, not 0"
                ),
                (
                    { @Sendable (c: inout LoadConfiguration) in c.messageBytes = -3 },
                    "--message-bytes must be at least 1, not -3"
                ),
                ({ @Sendable (c: inout LoadConfiguration) in c.duration = .zero }, "--duration must be greater than 0"),
                (
                    { @Sendable (c: inout LoadConfiguration) in c.warmup = .seconds(-1) },
                    "--warmup must not be negative"
                ),
                ({ @Sendable (c: inout LoadConfiguration) in c.rate = 0 }, "--rate must be greater than 0, not 0.0"),
                (
                    { @Sendable (c: inout LoadConfiguration) in c.connectRate = -5 },
                    "--connect-rate must be greater than 0, not -5.0"
                ),
                ({ @Sendable (c: inout LoadConfiguration) in c.threads = 0 }, "--threads must be 1...256, not 0"),
                ({ @Sendable (c: inout LoadConfiguration) in c.pipeline = 0 }, "--pipeline must be 1...65536, not 0"),
                ({ @Sendable (c: inout LoadConfiguration) in c.payload = [] }, "--payload-file is empty"),
                (
                    { @Sendable (c: inout LoadConfiguration) in
                        c.mode = .blast
                        c.rate = 10
                    },
                    "--rate does not apply to --mode blast (the server decides the pace)"
                ),
                (
                    { @Sendable (c: inout LoadConfiguration) in
                        c.mode = .sink
                        c.verify = true
                    },
                    "--verify does not apply to --mode sink (nothing comes back)"
                ),
            ] as [(@Sendable (inout LoadConfiguration) -> Void, String)])
        func badConfigurationIsOneLine(change: @Sendable (inout LoadConfiguration) -> Void, message: String) {
            var c = LoadConfiguration(target: "127.0.0.1:7000")
            change(&c)
            #expect(throws: LoadError(message)) { try LoadGenerator(configuration: c) }
        }

        @Test func unresolvableTargetsThrowOneLine() throws {
            for (target, start) in [
                ("nohost.invalid:80", "--target 'nohost.invalid:80': cannot resolve 'nohost.invalid'"),
                ("127.0.0.1", "--target '127.0.0.1' is not HOST:PORT"),
                ("127.0.0.1:0", "--target '127.0.0.1:0': port 0 is not in 1...65535"),
                ("127.0.0.1:70000", "--target '127.0.0.1:70000': port 70000 is not in 1...65535"),
            ] {
                let generator = try LoadGenerator(configuration: LoadConfiguration(target: target))
                do {
                    _ = try generator.run()
                    Issue.record("\(target) did not fail")
                } catch {
                    #expect(error.message.hasPrefix(start), "\(error.message)")
                    #expect(!error.message.contains("\n"))
                }
            }
        }

        // MARK: the binary

        @Test(arguments: [
            (["--connections", "0"], "zcr load: --connections must be at least 1, not 0"),
            (["--connections", "-5"], "zcr load: --connections must not be negative, not -5"),
            (["--connections", "many"], "zcr load: --connections: 'many' is not a whole number (examples: 100, 10k)"),
            (["--message-bytes", "0"], "zcr load: --message-bytes must be at least 1, not 0"),
            (["--duration", "-1s"], "zcr load: --duration must not be negative, not -1s"),
            (["--duration", "0s"], "zcr load: --duration must be greater than 0"),
            (
                ["--duration", "1ns"],
                "zcr load: --duration must be at least 10ms (a shorter window measures nothing), not 1 ns"
            ),
            (["--rate", "1e12"], "zcr load: --rate must be at most 1,000,000,000 msgs/s"),
            (["--duration", "soon"], "zcr load: --duration: 'soon' is not a duration (examples: 10s, 500ms, 2m)"),
            (["--rate", "-100"], "zcr load: --rate must be greater than 0, not -100"),
            (["--rate", "0"], "zcr load: --rate must be greater than 0, not 0"),
            (["--mode", "flood"], "zcr load: --mode must be one of echo, request, sink, blast, not 'flood'"),
            (["--payload-file", "/nonexistent/payload"], "zcr load: /nonexistent/payload: No such file or directory"),
        ])
        func badInputIsOneLineOnStderr(arguments: [String], line: String) async throws {
            let r = try await runZcr(["load", "--target", "127.0.0.1:9", "--quiet"] + arguments)
            #expect(r.status == 2)
            #expect(r.stderrLines == [Substring(line)])
        }

        @Test func missingTargetIsOneLine() async throws {
            let r = try await runZcr(["load", "--connections", "3"])
            #expect(r.status == 2)
            #expect(r.stderrLines == ["zcr load: --target HOST:PORT is required"])
        }

        @Test func unreachableTargetIsOneLineAndExitOne() async throws {
            let port = unusedPort()
            let dir = temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let r = try await runZcr([
                "load", "--target", "127.0.0.1:\(port)", "--connections", "4", "--duration", "1s",
                "--json", dir + "/r.json",
            ])
            #expect(r.status == 1)
            #expect(
                r.stderrLines == [
                    "zcr load: no connection to 127.0.0.1:\(port) was established: 4 refused "
                        + "(nothing listens there, or its backlog overflowed)"
                ])
            #expect(r.stdout.contains("connections: 0 of 4 established (failed: refused 4)"))
            let json = try jsonObject(String(decoding: try FileIO.read(dir + "/r.json"), as: UTF8.self))
            #expect(json["failure"] as? String != nil)
        }

        @Test func aRunThroughTheBinaryWritesItsJSON() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let dir = temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let r = try await runZcr([
                "load", "--target", server.target, "--connections", "8", "--duration", "500ms",
                "--threads", "1", "--json", dir + "/r.json", "--hdr-log", dir + "/r.hlog",
            ])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.isEmpty)
            #expect(r.stdout.contains("measuring  conns 8/8"))
            #expect(r.stdout.contains("connections: 8 of 8 established"))
            let json = try jsonObject(String(decoding: try FileIO.read(dir + "/r.json"), as: UTF8.self))
            #expect(json["connections_established"] as? Int == 8)
            #expect(json["failure"] is NSNull)
            #expect((json["messages_received"] as? Int ?? 0) > 0)
        }
    }
}
