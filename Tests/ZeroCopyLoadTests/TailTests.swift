// The window's tail: a server that stops answering late in the window must show in the latency figures (every
// request still waiting is recorded with its wait so far), in the unanswered counts and in a warning.
import Foundation
import Testing

@testable import ZeroCopyLoad

extension LoadRuns {
    @Suite struct TailTests {
        /// Two connections, pipeline 1, a 500 ms window against a server that echoes for `stallAfter` seconds and
        /// then stops answering: the run, when it started, and when each connection's server side stopped.
        func runAgainstAStall(after stallAfter: Double, rate: Double? = nil) async throws
            -> (run: LoadReport, start: UInt64, stalls: [UInt64]) {
            let server = try PlainServer(.echoThenStall(seconds: stallAfter))
            defer { server.stop() }
            let start = monotonicNanos()
            let r = try await runLoad(
                { c in
                    c.connections = 2
                    c.pipeline = 1
                    c.rate = rate
                    c.duration = .milliseconds(500)
                }, target: server.target)
            let stalls = server.stallStarts
            #expect(stalls.count == 2)
            return (r, start, stalls)
        }

        @Test func aServerThatStopsAnsweringShowsInMaxAndWarning() async throws {
            let (r, start, stalls) = try await runAgainstAStall(after: 0.05)
            // Each connection had one request in flight when the server stopped; it was sent before the server
            // got it, and the window closed no earlier than `start + duration`.
            let leastWait = (start + 500_000_000 - (stalls.max() ?? 0)) / 1000
            #expect(leastWait > 300_000)  // the stall is most of the window
            let l = try #require(r.latency)
            #expect(l.max >= leastWait, "max \(l.max) µs, stall \(leastWait) µs")
            // The two waits are the top of the distribution: p99.99 is one of them whenever they are at least 0.01%
            // of the samples (about 10,000 round trips before the stall: on any machine, more than 5 µs each).
            if l.count <= 20_000 { #expect(l.p9999 >= leastWait * 99 / 100) }  // within the histogram's precision
            #expect(r.unansweredAtEnd == 2)
            #expect(r.unsentAtEnd == nil)
            #expect(l.count == UInt64(r.messagesReceived + 2))
            let oldest = try #require(r.oldestUnansweredMicros)
            #expect(oldest >= leastWait)
            #expect(
                r.warnings.contains {
                    $0.hasPrefix(
                        "2 requests unanswered at window end, the oldest waiting \(Format.grouped(Int(oldest))) µs, longer than any answered"
                    )
                }, "\(r.warnings)")
            #expect(r.summary.contains("unanswered at window end: 2 (oldest waiting"))
            let json = try jsonObject(r.json)
            #expect(json["unanswered_at_window_end"] as? Int == 2)
            #expect(json["oldest_unanswered_us"] as? Int == Int(oldest))
        }

        @Test func openLoopCountsTheSendsThatWereDueAndNotMade() async throws {
            let (r, start, stalls) = try await runAgainstAStall(after: 0.15, rate: 1000)
            let stalledFor = Double(start + 500_000_000 - (stalls.max() ?? 0)) / 1e9
            #expect(r.unansweredAtEnd == 2)
            // 1000/s over the stall, less the two that went out: due and never sent (pipeline 1 was full).
            let unsent = try #require(r.unsentAtEnd)
            #expect(Double(unsent) >= 1000 * stalledFor - 10, "unsent \(unsent), stalled \(stalledFor) s")
            let l = try #require(r.latency)
            #expect(l.count == UInt64(r.messagesReceived + 2 + unsent))
            #expect(r.rawLatency?.count == UInt64(r.messagesReceived + 2))
            #expect(l.max >= UInt64(stalledFor * 1e6))
            #expect(
                r.warnings.contains {
                    $0.hasPrefix("2 requests unanswered and \(Format.grouped(unsent)) due and not sent at window end")
                })
            #expect((try jsonObject(r.json))["unsent_at_window_end"] as? Int == unsent)
        }
    }
}
