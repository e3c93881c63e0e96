// Blast knows what it is owed: a stream the server cuts short, a server that accepts and closes, and one that
// sends nothing all fail the run with one line (exit 1); blast without --expect-bytes or --until-eof is bad input.
import Foundation
import Testing

@testable import ZeroCopyLoad

extension LoadRuns {
    @Suite struct BlastTests {
        static func blast(_ target: String, _ extra: [String]) async throws -> ZcrRun {
            try await runZcr(
                [
                    "load", "--target", target, "--mode", "blast", "--verify", "--connections", "2", "--threads", "1",
                    "--duration", "300ms", "--quiet",
                ] + extra)
        }

        @Test func aStreamCutShortFailsWithItsByteCount() async throws {
            let server = try PlainServer(.blast(bytes: 100_000, corruptAt: nil))
            defer { server.stop() }
            let r = try await Self.blast(server.target, ["--expect-bytes", "1000000"])
            #expect(r.status == 1)
            let line = try #require(r.stderrLines.last)
            #expect(
                line.hasPrefix(
                    "zcr load: blast streams owed --expect-bytes 1,000,000: 2 ended short (first: connection "),
                "\(r.stderr)")
            #expect(line.hasSuffix(" ended after 100,000 bytes)"))
            #expect(r.stderrLines.count == 1)
            #expect(r.stdout.contains("streams: 0 complete (1,000,000 bytes each, then closed), 2 ended short"))
        }

        @Test func anAcceptAndCloseServerFails() async throws {
            let server = try PlainServer(.blast(bytes: 0, corruptAt: nil))
            defer { server.stop() }
            let owed = try await Self.blast(server.target, ["--expect-bytes", "64k"])
            #expect(owed.status == 1)
            #expect(owed.stderrLines.count == 1)
            #expect(owed.stderrLines.first?.hasSuffix(" ended after 0 bytes)") == true, "\(owed.stderr)")
            // The server's close is accepted as the end, but nothing at all arrived.
            let eof = try await Self.blast(server.target, ["--until-eof"])
            #expect(eof.status == 1)
            #expect(eof.stderrLines == ["zcr load: no byte of the stream arrived"])
        }

        @Test func aSilentServerFails() async throws {
            let server = try PlainServer(.sink)
            defer { server.stop() }
            for extra in [["--expect-bytes", "1000"], ["--until-eof"]] {
                let r = try await Self.blast(server.target, extra)
                #expect(r.status == 1)
                #expect(r.stderrLines == ["zcr load: no byte of the stream arrived"])
                #expect(r.stdout.contains("2 open connections moved no byte during the window"))
            }
        }

        @Test func aStreamStillArrivingWhenTheWindowClosesIsNotAFailure() async throws {
            let server = try PlainServer(.blast(bytes: 2_000_000_000, corruptAt: nil))
            defer { server.stop() }
            let r = try await runLoad(
                { c in
                    c.mode = .blast
                    c.expectBytes = 2_000_000_000
                    c.connections = 2
                    c.duration = .milliseconds(200)
                }, target: server.target)
            #expect(r.failure == nil, "\(r.failure ?? "")")
            #expect(r.unfinishedStreams == 2 && r.shortStreams == 0)
            #expect(
                r.notes.contains(
                    "2 streams had not received all 2,000,000,000 bytes when the window closed (the window, not the server, ended them)"
                ))
        }

        @Test func aStreamThatRunsLongFails() async throws {
            let server = try PlainServer(.blast(bytes: 5000, corruptAt: nil))
            defer { server.stop() }
            let r = try await Self.blast(server.target, ["--expect-bytes", "4000"])
            #expect(r.status == 1)
            #expect(
                r.stderrLines.first?.hasPrefix("zcr load: blast streams owed --expect-bytes 4,000: 2 ran long") == true,
                "\(r.stderr)")
        }

        @Test(arguments: [
            (
                [] as [String],
                "zcr load: --mode blast needs --expect-bytes B (the bytes each connection is owed) or --until-eof (the server's close ends each stream)"
            ),
            (["--expect-bytes", "10", "--until-eof"], "zcr load: --expect-bytes and --until-eof exclude each other"),
            (["--expect-bytes", "0"], "zcr load: --expect-bytes must be at least 1, not 0"),
        ])
        func blastWithoutItsOwedBytesIsBadInput(extra: [String], line: String) async throws {
            let r = try await Self.blast("127.0.0.1:9", extra)
            #expect(r.status == 2)
            #expect(r.stderrLines == [Substring(line)])
        }

        @Test func expectBytesIsBlastOnly() async throws {
            let r = try await runZcr(["load", "--target", "127.0.0.1:9", "--expect-bytes", "10", "--quiet"])
            #expect(r.status == 2)
            #expect(r.stderrLines == ["zcr load: --expect-bytes applies to --mode blast only"])
        }
    }
}
