// --rate-stages: the ramp arithmetic exactly (sends due by a time, when the n-th send is due), bad stages as one
// line, and a run whose per-interval counts follow the ramp up and down.
import Foundation
import Testing

@testable import ZeroCopyLoad

@Suite struct RateScheduleTests {
    @Test func parsesStages() throws {
        #expect(
            try RateStage.parse("10s:1k,30s:50k,10s:0") == [
                RateStage(duration: .seconds(10), target: 1000), RateStage(duration: .seconds(30), target: 50000),
                RateStage(duration: .seconds(10), target: 0),
            ])
        #expect(try RateStage.parse("1s:0.0,2s:2.5k").map(\.target) == [0, 2500])
        #expect(throws: LoadError("--rate-stages: '1s:-5': a target must be 0 msgs/s or more")) { try RateStage.parse("1s:-5") }
        #expect(throws: LoadError("--rate-stages: '10s' is not DURATION:RATE (example: 10s:1k,30s:50k,10s:0)")) {
            try RateStage.parse("10s")
        }
        #expect(throws: LoadError("--rate-stages: 'soon' is not a duration (examples: 10s, 500ms, 2m)")) {
            try RateStage.parse("soon:5")
        }
    }

    @Test func rampsLinearlyFromZeroAndBack() throws {
        // 0 -> 1000/s over 2 s, 1000/s for 1 s, -> 0 over 2 s: 1000 + 1000 + 1000 sends.
        let s = RateSchedule(try RateStage.parse("2s:1000,1s:1000,2s:0"))
        #expect(s.total == 3000 && s.length == 5e9)
        #expect(s.averageRate == 600)
        #expect(s.sends(by: 1e9) == 250)  // the area under the first second of the ramp
        #expect(s.sends(by: 2e9) == 1000)
        #expect(s.sends(by: 2.5e9) == 1500)
        #expect(s.sends(by: 9e9) == 3000)
        #expect(s.rate(at: 1e9) == 500 && s.rate(at: 2.5e9) == 1000 && s.rate(at: 4e9) == 500)
        #expect(s.rate(at: 6e9) == 0)
        for n in [1.0, 250, 999, 1000, 1500, 2001, 2500, 2999, 3000] {
            let t = try #require(s.time(ofSend: n))
            #expect(abs(s.sends(by: t) - n) < 1e-6, "send \(n) at \(t)")
        }
        #expect(s.time(ofSend: 3000.5) == nil)
        // Down to 0, a pause, up again: no send falls in the pause (50 + 25 sends before it).
        let pause = RateSchedule(try RateStage.parse("1s:100,0.5s:0,0.5s:0,1s:100"))
        let t = try #require(pause.time(ofSend: 75.5))
        #expect(t >= 2e9)
    }
}

extension LoadRuns {
    @Suite struct RateStageRunTests {
        @Test func perIntervalCountsFollowTheRamp() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let dir = temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let path = dir + "/stages.hlog"
            // Up to 3000/s over 0.6 s, down to 0 over 0.6 s: 1800 sends, 200 ms intervals.
            let r = try await runLoad(
                { c in
                    c.connections = 4
                    c.threads = 1
                    c.rateStages = [
                        RateStage(duration: .milliseconds(600), target: 3000),
                        RateStage(duration: .milliseconds(600), target: 0),
                    ]
                    c.interval = .milliseconds(200)
                    c.hdrLogPath = path
                }, target: server.target)
            #expect(r.failure == nil, "\(r.failure ?? "")")
            #expect(r.rate == 1500)
            #expect(r.durationSeconds >= 1.2)
            #expect(r.messagesSent >= 1700 && r.messagesSent <= 1801, "\(r.messagesSent)")
            let log = try HdrLogFile(text: String(decoding: try FileIO.read(path), as: UTF8.self), name: path)
            let counts = log.intervals.filter { $0.tag == "sched" }.map(\.histogram.totalCount)
            // Planned per 200 ms: 100, 300, 500, 500, 300, 100 (the sends the loop reached in each interval).
            #expect(counts.count >= 6, "\(counts)")
            if counts.count >= 6 {
                #expect(counts[0] < counts[2] && counts[0] < 250, "\(counts)")
                #expect(counts[3] > counts[5] && counts[5] < 250, "\(counts)")
                #expect(counts.reduce(0, +) == UInt64(r.messagesSent))
            }
            let json = try jsonObject(r.json)
            let stages = try #require(json["rate_stages"] as? [[String: Any]])
            #expect(stages.map { $0["target_per_s"] as? Double } == [3000, 0])
        }

        @Test(arguments: [
            (["--rate-stages", "1s:10", "--rate", "5"], "zcr load: --rate and --rate-stages exclude each other"),
            (
                ["--rate-stages", "1s:10", "--duration", "5s"],
                "zcr load: --duration and --rate-stages exclude each other: the stages' total is the window"
            ),
            (["--rate-stages", "1s:0,2s:0"], "zcr load: --rate-stages plans no send at all"),
            (
                ["--rate-stages", "1s:10", "--warmup", "1s"],
                "zcr load: --warmup does not apply with --rate-stages: make the first stage the warm-up"
            ),
        ])
        func badStagesAreOneLine(arguments: [String], line: String) async throws {
            let r = try await runZcr(["load", "--target", "127.0.0.1:9", "--quiet"] + arguments)
            #expect(r.status == 2)
            #expect(r.stderrLines == [Substring(line)])
        }
    }
}
