// The generator against servers it did not write: a plain-socket echo server (closed and open loop, request and
// sink modes, the hdr log of a real run) and the library's blast server, plus the checks that must fail a run.
import Foundation
import Testing
import ZeroCopyReactor

@testable import ZeroCopyLoad

/// Runs a short load (off Swift concurrency's threads).
func runLoad(_ configure: @Sendable (inout LoadConfiguration) -> Void, target: String) async throws -> LoadReport {
    var c = LoadConfiguration(target: target, mode: .echo, threads: 2)
    c.duration = .milliseconds(400)
    c.interval = .milliseconds(100)
    c.connectTimeout = .seconds(5)
    configure(&c)
    let generator = try LoadGenerator(configuration: c)
    let result = await offThread { () -> Result<LoadReport, LoadError> in
        Result { () throws(LoadError) -> LoadReport in try generator.run() }
    }
    return try result.get()
}

extension LoadRuns {
    @Suite struct GeneratorTests {
        @Test func echoClosedLoopAgainstPlainSocketServer() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let r = try await runLoad(
                { c in
                    c.connections = 20
                    c.messageBytes = 100
                    c.warmup = .milliseconds(100)
                }, target: server.target)
            #expect(r.failure == nil)
            #expect(r.connectionsEstablished == 20)
            #expect(server.accepted == 20)
            #expect(r.connectErrors.isEmpty)
            #expect(r.messagesReceived > 100)
            // Every message sent is whole; every completed response is one latency sample, in the same window, and
            // so is every request still in flight when it closed.
            #expect(r.bytesSent == r.messagesSent * 100)
            let inFlight = try #require(r.unansweredAtEnd)
            #expect(inFlight > 0 && inFlight <= 20 * 16)
            #expect(r.latency?.count == UInt64(r.messagesReceived + inFlight))
            #expect(r.rawLatency == nil)
            #expect(r.verify && r.verifyErrors == 0 && r.verifiedBytes >= r.bytesReceived)
            #expect(r.errors.isEmpty)
            #expect(r.messagesSent - r.messagesReceived <= 20 * 16)  // at most the pipeline per connection in flight
            let l = try #require(r.latency)
            #expect(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.p9999 && l.p9999 <= l.max)
            #expect((r.generatorLag?.count ?? 0) > 0)
            #expect(r.loopBusy.count == 2)

            let json = try jsonObject(r.json)
            for key in [
                "target", "mode", "connections_requested", "connections_established", "connect_errors",
                "messages_sent", "messages_received", "bytes_sent", "bytes_received", "duration_s",
                "messages_per_s", "bytes_per_s", "latency_us", "raw_latency_us", "verify_errors",
                "generator_lag_us", "errors",
            ] {
                #expect(json.keys.contains(key), "JSON lacks \(key)")
            }
            #expect(json["target"] as? String == server.target)
            #expect(json["mode"] as? String == "echo")
            #expect(json["connections_established"] as? Int == 20)
            #expect(json["messages_received"] as? Int == r.messagesReceived)
            #expect(json["raw_latency_us"] is NSNull)
            let latency = try #require(json["latency_us"] as? [String: Any])
            #expect(Set(latency.keys).isSuperset(of: ["p50", "p90", "p99", "p999", "p9999", "max"]))
            #expect(latency["p99"] as? Int == Int(l.p99))
            let lag = try #require(json["generator_lag_us"] as? [String: Any])
            #expect(lag["p99"] is Int && lag["max"] is Int)
        }

        @Test func openLoopPacesAndMeasuresFromIntendedSendTime() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let r = try await runLoad(
                { c in
                    c.connections = 10
                    c.rate = 2000
                    c.duration = .seconds(1)
                }, target: server.target)
            #expect(r.failure == nil)
            // 2000 msgs/s for about a second: the schedule, not the server, sets the pace.
            let expected = 2000 * r.durationSeconds
            #expect(
                Double(r.messagesSent) > expected * 0.8 && Double(r.messagesSent) < expected * 1.1,
                "sent \(r.messagesSent) in \(r.durationSeconds) s")
            let corrected = try #require(r.latency)
            let raw = try #require(r.rawLatency)
            // The raw histogram has every response and every request in flight at the end; the corrected one also
            // has the sends that were due and not made.
            #expect(corrected.count == raw.count + UInt64(r.unsentAtEnd ?? -1))
            #expect(raw.count == UInt64(r.messagesReceived + (r.unansweredAtEnd ?? -1)))
            // Measured from the intended time, never shorter than from the actual send.
            #expect(corrected.max >= raw.max && corrected.p50 >= raw.p50)
            let json = try jsonObject(r.json)
            #expect(json["loop"] as? String == "open")
            #expect(json["raw_latency_us"] is [String: Any])
        }

        @Test func requestModeWithPipelineAndSinkMode() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let request = try await runLoad(
                { c in
                    c.mode = .request
                    c.connections = 4
                    c.pipeline = 3
                    c.verify = true
                }, target: server.target)
            #expect(request.failure == nil)
            #expect(request.messagesReceived > 0 && request.verifyErrors == 0)
            #expect(request.messagesSent - request.messagesReceived <= 4 * 3)
            #expect(request.latency?.count == UInt64(request.messagesReceived + (request.unansweredAtEnd ?? -1)))

            let sink = try await runLoad(
                { c in
                    c.mode = .sink
                    c.connections = 3
                    c.messageBytes = 1000
                }, target: server.target)
            #expect(sink.failure == nil)
            #expect(sink.messagesSent > 0 && sink.bytesSent == sink.messagesSent * 1000)
            #expect(sink.latency == nil && !sink.verify && sink.unansweredAtEnd == nil)
        }

        @Test func payloadFileIsSentAndEchoVerified() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let payload = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            let r = try await runLoad(
                { c in
                    c.connections = 2
                    c.payload = payload
                }, target: server.target)
            #expect(r.failure == nil)
            #expect(r.messageBytes == payload.count)
            #expect(r.bytesSent == r.messagesSent * payload.count)
            #expect(r.verifyErrors == 0 && r.messagesReceived > 0)
        }

        @Test func hdrLogOfARunHoldsEveryLatencySample() async throws {
            let server = try PlainServer(.echo)
            defer { server.stop() }
            let dir = temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let path = dir + "/run.hlog"
            let r = try await runLoad(
                { c in
                    c.connections = 5
                    c.rate = 1000
                    c.hdrLogPath = path
                }, target: server.target)
            #expect(r.failure == nil)
            let text = String(decoding: try FileIO.read(path), as: UTF8.self)
            #expect(text.contains("#[Histogram log format version 1.3]"))
            let log = try HdrLogFile(text: text, name: path)
            let untagged = log.intervals.filter { $0.tag == nil }
            #expect(untagged.count >= 3)  // 400 ms in 100 ms intervals
            #expect(untagged.map(\.histogram.totalCount).reduce(0, +) == r.latency?.count)
            #expect(
                log.intervals.filter { $0.tag == "raw" }.map(\.histogram.totalCount).reduce(0, +) == r.rawLatency?.count
            )
            #expect(log.intervals.contains { $0.tag == "lag" })
            #expect(
                log.intervals.filter { $0.tag == "sched" }.map(\.histogram.totalCount).reduce(0, +)
                    == r.scheduleLateness?.count)
            let merged = try HdrMerge.merge(logs: [(path, text)])
            #expect(merged.summaries[""]?.count == r.latency?.count)
            #expect(merged.summaries[""]?.p99 == r.latency?.p99)
        }

        @Test func blastVerifyAgainstTheLibrarysBlastServer() async throws {
            let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
            defer { pool.shutdown() }
            let server = BuiltinServer(mode: .blast, blastBytes: 300_007, sliceBytes: 4096)
            let address = try pool.listen(host: "127.0.0.1", port: 0, handler: server.handler(for:))
            let r = try await runLoad(
                { c in
                    c.mode = .blast
                    c.verify = true
                    c.expectBytes = 300_007
                    c.connections = 3
                    // Accepted in separate loop iterations: the core's blast server can stall a connection accepted in the
                    // same iteration as another (reported to the core; not the generator's bug).
                    c.connectRate = 10
                    c.messageBytes = 1000
                    c.duration = .seconds(5)  // ends as soon as the server has sent everything
                }, target: "\(address)")
            #expect(r.failure == nil)
            #expect(r.verifyErrors == 0)
            #expect(r.verifiedBytes == 3 * 300_007)
            #expect(r.peerCloses == 3)  // the server's normal end in blast mode, not an error
            #expect(r.shortStreams == 0 && r.longStreams == 0)
            #expect(r.summary.contains("streams: 3 complete (300,007 bytes each, then closed)"))
            #expect(r.errors.isEmpty)
            #expect(r.durationSeconds < 5)
        }

        @Test func blastVerifyCountsOneWrongByteExactly() async throws {
            let server = try PlainServer(.blast(bytes: 500_000, corruptAt: 123_456))
            defer { server.stop() }
            let r = try await runLoad(
                { c in
                    c.mode = .blast
                    c.verify = true
                    c.untilEOF = true
                    c.connections = 1
                    c.messageBytes = 1000
                    c.duration = .seconds(5)
                }, target: server.target)
            #expect(r.verifyErrors == 1)
            #expect(r.verifiedBytes == 500_000)
            let expected = UInt8(123_456 % 251)
            #expect(
                r.firstVerifyError?.contains("stream byte 123456: expected \(expected), got \(expected ^ 0xff)") == true
            )
            let failure = try #require(r.failure)
            #expect(failure.hasPrefix("1 verify error:"))
            #expect((try jsonObject(r.json))["verify_errors"] as? Int == 1)
        }

        @Test func echoVerifyCatchesAServerThatChangesOneByte() async throws {
            let server = try PlainServer(.corruptingEcho(at: 64 * 7 + 3))
            defer { server.stop() }
            let r = try await runLoad({ c in c.connections = 1 }, target: server.target)
            #expect(r.verifyErrors == 1)
            #expect(r.firstVerifyError?.contains("stream byte \(64 * 7 + 3):") == true)
            #expect(r.failure?.hasPrefix("1 verify error") == true)
            #expect(r.exitCode == 1)
        }

        @Test func echoVerifyCatchesBytesDeliveredToTheWrongConnection() async throws {
            // A shared-buffer bug in miniature: each connection gets the other's echo, whole and in order.
            let server = try PlainServer(.swappingEcho)
            defer { server.stop() }
            for mode in [LoadMode.echo, .request] {
                let r = try await runLoad(
                    { c in
                        c.mode = mode
                        c.verify = true
                        c.connections = 2
                        c.threads = 1
                        c.pipeline = 1
                    }, target: server.target)
                #expect(r.messagesReceived > 0)
                #expect(r.verifyErrors > 0)
                #expect(r.failure?.contains("verify error") == true, "\(r.failure ?? "nil")")
            }
            // Blast keeps one stream for every connection: the i % 251 pattern `zcr serve --mode blast` sends.
            let plan = TrafficPlan({
                var c = LoadConfiguration(target: "x:1", mode: .blast)
                c.untilEOF = true
                return c
            }())
            #expect(plan.payload.shift(connection: 0) == 0 && plan.payload.shift(connection: 7) == 0)
            #expect(plan.payload.expected(at: 300) == UInt8(300 % 251))
        }

        @Test func connectionsTheServerStopsServingAreReportedAsStalled() async throws {
            // A server that reads and never answers: each echo connection fills its pipeline during the warm-up,
            // then moves nothing for the whole window.
            let server = try PlainServer(.sink)
            defer { server.stop() }
            let r = try await runLoad(
                { c in
                    c.connections = 6
                    c.warmup = .milliseconds(200)
                }, target: server.target)
            #expect(r.stalledConnections == 6)
            #expect(r.messagesSent == 0 && r.messagesReceived == 0)
            #expect(
                r.warnings.contains(
                    "6 open connections moved no byte during the window (stalled: the server stopped "
                        + "serving them)"))
            #expect(r.failure == "no message completed in the window")
            #expect((try jsonObject(r.json))["stalled_connections"] as? Int == 6)
        }
    }
}
