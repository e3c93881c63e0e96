// The generator's own health: hiccups (a 1 ms timer per loop) and schedule lateness (every open-loop send against
// its intended time, zeros included) are separate figures, and a generator that falls behind its schedule says so.
import Foundation
import Testing

@testable import ZeroCopyLoad

extension LoadRuns {
    @Suite struct GeneratorHealthTests {
        @Test func everyScheduledSendHasItsLatenessAndHiccupsAreApart() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let r = try await runLoad(
                { c in
                    c.connections = 4
                    c.threads = 1
                    c.rate = 1000
                    c.duration = .milliseconds(400)
                }, target: server.target)
            #expect(r.failure == nil)
            let late = try #require(r.scheduleLateness)
            // Nothing held sends back (pipeline 16 at 250/s per connection): each slot of the window was one send.
            #expect(late.count == UInt64(r.messagesSent), "lateness \(late.count), sent \(r.messagesSent)")
            let hiccups = try #require(r.generatorLag)
            // About one hiccup sample per millisecond of the window (more when corrected for late timers).
            #expect(hiccups.count >= 200 && hiccups.count < 2000, "\(hiccups.count)")
            let json = try jsonObject(r.json)
            #expect((json["schedule_lateness_us"] as? [String: Any])?["count"] as? Int == r.messagesSent)

            let closed = try await runLoad({ c in c.connections = 2 }, target: server.target)
            #expect(closed.scheduleLateness == nil && closed.generatorLag != nil)
        }

        @Test func aGeneratorThatFallsBehindItsScheduleSaysSo() async throws {
            // Far more than one loop can send: it falls further behind every millisecond, and the lateness of its
            // sends is measured from their intended times (not from when it last caught up).
            let server = try PlainServer(.sink)
            defer { server.stop() }
            let r = try await runLoad(
                { c in
                    c.mode = .sink
                    c.connections = 2
                    c.threads = 1
                    c.rate = 20_000_000
                    c.duration = .milliseconds(400)
                }, target: server.target)
            let late = try #require(r.scheduleLateness)
            #expect(late.max >= 200_000, "max \(late.max) µs")
            #expect(r.warnings.contains { $0.hasPrefix("the generator got to its scheduled sends late (p99 ") })
            #expect(r.warnings.contains { $0.hasSuffix("asked: the generator could not keep up") }, "\(r.warnings)")
        }
    }
}
