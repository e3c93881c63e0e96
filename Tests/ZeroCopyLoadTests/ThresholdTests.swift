// `--fail-if`: conditions parsed exactly (units, k6 spellings), bad ones one line and exit 2, and runs that miss or
// meet them (exit 1 naming every condition not met; the conditions in the JSON).
import Foundation
import Testing

@testable import ZeroCopyLoad

@Suite struct ThresholdParseTests {
    @Test func parsesEveryMetricWithItsUnits() throws {
        let t = try Threshold.parse(
            "p99<5ms, max<=50ms,errors=0,rate>=95%,p(90)<250us,p99.9<1s,connections>=10k,msgs_per_s>2.5k,unanswered==0,mean!=0ns"
        )
        #expect(
            t.map(\.metric) == [
                .p99, .max, .errors, .rate, .p90, .p999, .connections, .msgsPerSecond, .unanswered, .mean,
            ])
        #expect(
            t.map(\.comparison) == [
                .less, .lessOrEqual, .equal, .greaterOrEqual, .less, .less, .greaterOrEqual, .greater, .equal,
                .notEqual,
            ])
        #expect(t.map(\.limit) == [5000, 50000, 0, 0.95, 250, 1_000_000, 10000, 2500, 0, 0])
        #expect(t[0].text == "p99<5ms" && t[1].text == "max<=50ms")
    }

    @Test(arguments: [
        ("p99<5", "--fail-if 'p99<5': give the latency a unit (5ms, 500us, 1s)"),
        (
            "p98<5ms",
            "--fail-if 'p98<5ms': unknown metric 'p98' (one of p50, p90, p99, p999, p9999, max, mean, errors, unanswered, rate, connections, msgs_per_s)"
        ),
        ("p99", "--fail-if 'p99': no comparison (use <, <=, >, >=, = or !=)"),
        ("p99<", "--fail-if 'p99<': no value after <"),
        ("p99<fast", "--fail-if 'p99<fast': 'fast' is not a duration (examples: 5ms, 500us, 1s)"),
        ("p99<5parsecs", "--fail-if 'p99<5parsecs': '5parsecs' is not a duration (examples: 5ms, 500us, 1s)"),
        ("errors=none", "--fail-if 'errors=none': 'none' is not a whole number (examples: 0, 100, 10k)"),
        ("rate>=most", "--fail-if 'rate>=most': 'most' is not a ratio (examples: 0.95, 95%)"),
        ("p99<5ms,,errors=0", "--fail-if 'p99<5ms,,errors=0': an empty condition"),
    ])
    func badExpressionsAreOneLine(expression: String, message: String) {
        #expect(throws: LoadError(message)) { try Threshold.parse(expression) }
    }
}

extension LoadRuns {
    @Suite struct ThresholdRunTests {
        @Test(arguments: [
            (["--fail-if", "p99<5"], "zcr load: --fail-if 'p99<5': give the latency a unit (5ms, 500us, 1s)"),
            (["--fail-if", "rate>=0.9"], "zcr load: --fail-if 'rate>=0.9': rate (achieved / asked) needs --rate"),
            (
                ["--mode", "sink", "--fail-if", "p99<5ms"],
                "zcr load: --fail-if 'p99<5ms': p99 is measured in --mode echo and request only"
            ),
        ])
        func badConditionsExitTwo(arguments: [String], line: String) async throws {
            let r = try await runZcr(["load", "--target", "127.0.0.1:9", "--quiet"] + arguments)
            #expect(r.status == 2)
            #expect(r.stderrLines == [Substring(line)])
        }

        @Test func aRunThatMissesItsConditionsFailsNamingEachOne() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let dir = temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let r = try await runZcr([
                "load", "--target", server.target, "--connections", "2", "--threads", "1", "--duration", "300ms",
                "--quiet", "--json", dir + "/r.json", "--fail-if", "p99<1ns,errors=0,connections>=3,max<60s",
            ])
            #expect(r.status == 1)
            let line = try #require(r.stderrLines.first)
            #expect(r.stderrLines.count == 1)
            #expect(line.hasPrefix("zcr load: --fail-if not met: p99<1ns ("), "\(line)")
            #expect(line.hasSuffix(" µs), connections>=3 (2)"), "\(line)")
            let json = try jsonObject(String(decoding: try FileIO.read(dir + "/r.json"), as: UTF8.self))
            let conditions = try #require(json["fail_if"] as? [[String: Any]])
            #expect(
                conditions.map { $0["condition"] as? String } == ["p99<1ns", "errors=0", "connections>=3", "max<60s"])
            #expect(conditions.map { $0["passed"] as? Bool } == [false, true, false, true])
            #expect(conditions[2]["value"] as? Double == 2 && conditions[2]["limit"] as? Double == 3)

            let met = try await runZcr([
                "load", "--target", server.target, "--connections", "2", "--threads", "1", "--duration", "300ms",
                "--quiet", "--fail-if", "errors=0,connections>=2,max<60s,unanswered<=32",
            ])
            #expect(met.status == 0, "\(met.stderr)")
            #expect(met.stdout.contains("fail-if: errors=0 met (0), connections>=2 met (2), max<60s met ("))
        }

        @Test func conditionsAreCheckedWhenTheConnectPhaseFails() async throws {
            let port = unusedPort()
            let r = try await runLoad(
                { c in
                    c.connections = 2
                    c.failIf = try! Threshold.parse("connections>=2,p99<1s")
                }, target: "127.0.0.1:\(port)")
            #expect(r.thresholds.map(\.passed) == [false, false])
            #expect(
                r.failure == "no connection to 127.0.0.1:\(port) was established: 2 refused (nothing listens there, or "
                    + "its backlog overflowed); --fail-if not met: connections>=2 (0), p99<1s (not measured)")
        }

        @Test func rateAndUnansweredAgainstAServerThatNeverAnswers() async throws {
            let server = try PlainServer(.sink)
            defer { server.stop() }
            let r = try await runLoad(
                { c in
                    c.connections = 2
                    c.pipeline = 1
                    c.rate = 1000
                    c.failIf = try! Threshold.parse("rate>=0.95,unanswered=0")
                }, target: server.target)
            #expect(r.thresholds.map(\.passed) == [false, false])
            let unanswered = try #require(r.thresholds[1].value)
            #expect(unanswered == Double((r.unansweredAtEnd ?? 0) + (r.unsentAtEnd ?? 0)) && unanswered > 300)
            #expect(r.failure?.contains("; --fail-if not met: rate>=0.95 (0.") == true, "\(r.failure ?? "")")
        }
    }
}
