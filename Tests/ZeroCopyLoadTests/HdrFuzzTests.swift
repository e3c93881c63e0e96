// `zcr load merge` against corrupted logs: every value that does not fit (non-finite or huge times, counts that
// overflow, layouts whose arithmetic overflows, counts past the histogram's range) is one line and exit 1, never a
// trap. A deterministic fuzz loop mutates valid logs at the text and at the decompressed-histogram level.
import Foundation
import Histogram
import Testing

@testable import ZeroCopyLoad

@Suite struct HdrFuzzTests {
    /// SplitMix64: the same corruptions on every run.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    /// The uncompressed V2 form, written field by field (so tests can put anything in it).
    static func plain(digits: UInt32, lowest: UInt64, highest: UInt64, counts: [Int64]) -> [UInt8] {
        var payload: [UInt8] = []
        for c in counts { ZigZag.put(c, into: &payload) }
        var out: [UInt8] = []
        func put(_ v: UInt64, _ bytes: Int) {
            for i in (0..<bytes).reversed() { out.append(UInt8(truncatingIfNeeded: v >> UInt64(8 * i))) }
        }
        put(UInt64(HdrEncoding.v2Cookie), 4)
        put(UInt64(payload.count), 4)
        put(0, 4)
        put(UInt64(digits), 4)
        put(lowest, 8)
        put(highest, 8)
        put((1.0).bitPattern, 8)
        return out + payload
    }

    static func log(_ lines: [(start: String, plain: [UInt8])], startTime: String = "1700000000.000") throws -> String {
        var text = "#[Histogram log format version 1.3]\n#[StartTime: \(startTime) (seconds since epoch)]\n"
        for l in lines { text += "\(l.start),1.000,0.000,\(try HdrEncoding.encode(plain: l.plain))\n" }
        return text
    }

    static func mergeError(_ logs: [String]) -> String? {
        do {
            _ = try HdrMerge.merge(logs: logs.enumerated().map { ("f\($0.offset).hlog", $0.element) })
            return nil
        } catch {
            return error.message
        }
    }

    static let valid = plain(digits: 3, lowest: 1, highest: 3_600_000_000, counts: [0, 5, 7, -3, 2])

    @Test(arguments: ["inf", "-inf", "nan", "1e300", "-1e19", "1e12", String(repeating: "9", count: 400)])
    func nonFiniteOrHugeStartTimesAreRejected(start: String) throws {
        let text = try Self.log([("0.000", Self.valid), (start, Self.valid)])
        #expect(Self.mergeError([text]) == "f0.hlog:4: interval start or length out of range")
    }

    @Test func hugeStartTimeHeaderIsRejected() throws {
        let text = try Self.log([("0.000", Self.valid)], startTime: String(repeating: "9", count: 400))
        #expect(Self.mergeError([text]) == "f0.hlog:2: StartTime out of range")
    }

    @Test func overflowingCountsAreRejected() throws {
        let max = try Self.log([("0.000", Self.plain(digits: 3, lowest: 1, highest: 1 << 40, counts: [Int64.max]))])
        // One count of 2^63 - 1 fits; a second one in another file does not.
        #expect(Self.mergeError([max]) == nil)
        #expect(Self.mergeError([max, max]) == "f1.hlog: counts overflow: more than 2^63 - 1 values in tag 'latency'")
        // Four counts of 2^62 wrap 2^64 to "no values" unless checked: the second already passes 2^63 - 1.
        let quarter = Int64(1) << 62
        let four = try Self.log(
            (0..<4).map { ("\($0).000", Self.plain(digits: 3, lowest: 1, highest: 1 << 40, counts: [quarter])) })
        #expect(Self.mergeError([four]) == "f0.hlog: counts overflow: more than 2^63 - 1 values in tag 'latency'")
        let inOne = try Self.log([
            ("0.000", Self.plain(digits: 3, lowest: 1, highest: 1 << 40, counts: [quarter, quarter]))
        ])
        #expect(Self.mergeError([inOne]) == "f0.hlog:3: histogram counts overflow (more than 2^63 - 1 values)")
    }

    @Test func layoutsWhoseArithmeticOverflowsAreRejected() throws {
        for (digits, lowest, highest) in [
            (5, UInt64(1) << 62, UInt64.max), (3, UInt64(1) << 60, UInt64.max), (2, UInt64.max / 2 + 1, UInt64.max),
            (6, 1, 1000), (3, 0, 1000), (3, 600, 1000),
        ] as [(UInt32, UInt64, UInt64)] {
            let text = try Self.log([
                ("0.000", Self.plain(digits: digits, lowest: lowest, highest: highest, counts: [1]))
            ])
            #expect(
                Self.mergeError([text])
                    == "f0.hlog:3: histogram header out of range (digits \(digits), lowest \(lowest), highest \(highest))"
            )
        }
        // A count past the bucket of the highest trackable value.
        let past = try Self.log([("0.000", Self.plain(digits: 1, lowest: 1, highest: 100, counts: [-1000, 1]))])
        #expect(
            Self.mergeError([past])
                == "f0.hlog:3: corrupt histogram counts (a count beyond the highest trackable value)")
    }

    @Test func fuzzedLogsNeverTrap() throws {
        var random = Random(state: 12)
        let baseLines: [(start: String, plain: [UInt8])] = [
            ("0.000", Self.valid),
            ("1.000", Self.plain(digits: 2, lowest: 1000, highest: 1 << 50, counts: [-40, 3, 0, 9, -100, 1])),
            ("2.000", Self.plain(digits: 5, lowest: 1, highest: 1 << 62, counts: [1, -200000, 4])),
        ]
        let specials: [UInt64] = [0, 1, 2, 1 << 31, 1 << 32, 1 << 61, 1 << 62, 1 << 63, UInt64.max, UInt64.max / 2]
        var failures = 0
        var successes = 0
        for _ in 0..<300 {
            var lines = baseLines
            let which = random.below(lines.count)
            var p = lines[which].plain
            switch random.below(4) {
            case 0:  // flip a few bits anywhere
                for _ in 0..<(1 + random.below(3)) { p[random.below(p.count)] ^= UInt8(1 << random.below(8)) }
            case 1:  // a header field set to a special value
                let field = [12, 16, 24][random.below(3)]
                let v = specials[random.below(specials.count)]
                let width = field == 12 ? 4 : 8
                for i in 0..<width { p[field + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * (width - 1 - i))) }
            case 2:  // counts replaced by huge or random ones
                var counts: [Int64] = []
                for _ in 0..<(1 + random.below(5)) {
                    counts.append(
                        random.below(2) == 0
                            ? [Int64.max, Int64.min + 1, 1 << 62, -(1 << 39), 1][random.below(5)]
                            : Int64(bitPattern: random.next()) >> random.below(64))
                }
                p = Self.plain(digits: 3, lowest: 1, highest: 1 << 40, counts: counts)
            default:  // the payload length field
                let v = UInt32(truncatingIfNeeded: random.next() >> random.below(33))
                for i in 0..<4 { p[4 + i] = UInt8(truncatingIfNeeded: v >> UInt32(8 * (3 - i))) }
            }
            lines[which].plain = p
            if random.below(5) == 0 {
                lines[random.below(lines.count)].start =
                    ["inf", "nan", "-1e19", "1e300", "1e-300", "-0", "99999999999.9", "5e10"][random.below(8)]
            }
            let text = try Self.log(lines)
            let copies = 1 + random.below(3)
            do {
                let result = try HdrMerge.merge(logs: (0..<copies).map { ("f\($0).hlog", text) })
                successes += 1
                // What merge produced is itself a readable log, and its figures are within range.
                _ = result.summary
                _ = result.json
                let back = try HdrLogFile(text: result.log, name: "merged")
                #expect(!back.intervals.isEmpty)
                for s in result.summaries.values { #expect(s.count <= UInt64(Int64.max)) }
            } catch {
                failures += 1
                #expect(!error.message.contains("\n") && !error.message.isEmpty)
            }
        }
        // Both outcomes occur, so the loop exercises the checks and the merge.
        #expect(failures > 50 && successes > 50, "\(failures) rejected, \(successes) merged")
    }

    @Test func mergeOutputsAreCheckedBeforeAndAfter() async throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileIO.write(try Self.log([("0.000", Self.valid)]), to: dir + "/a.hlog")
        let missing = try await runZcr(["load", "merge", dir + "/a.hlog", "-o", "/nonexistent-dir/m.hlog"])
        #expect(missing.status == 1)
        #expect(missing.stderrLines == ["zcr load: merge: /nonexistent-dir/m.hlog: No such file or directory"])
        for flag in ["-o", "--json"] {
            let full = try await runZcr(["load", "merge", dir + "/a.hlog", flag, "/dev/full"])
            #expect(full.status == 1)
            #expect(full.stderrLines == ["zcr load: merge: /dev/full: write failed: No space left on device"])
        }
    }

    @Test func corruptedLogThroughTheBinaryIsOneLineAndExitOne() async throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, String)] = [
            (try Self.log([("inf", Self.valid)]), "bad.hlog:3: interval start or length out of range"),
            (
                try Self.log([("0.000", Self.plain(digits: 5, lowest: 1 << 62, highest: UInt64.max, counts: [1]))]),
                "bad.hlog:3: histogram header out of range (digits 5, lowest 4611686018427387904, highest "
                    + "18446744073709551615)"
            ),
            (
                try Self.log(
                    (0..<4).map { ("\($0).000", Self.plain(digits: 3, lowest: 1, highest: 1 << 40, counts: [1 << 62])) }
                ), "bad.hlog: counts overflow: more than 2^63 - 1 values in tag 'latency'"
            ),
        ]
        for (text, line) in cases {
            try FileIO.write(text, to: dir + "/bad.hlog")
            let r = try await runZcr(["load", "merge", dir + "/bad.hlog"])
            #expect(r.status == 1)
            #expect(r.stderrLines == [Substring("zcr load: merge: \(dir)/\(line)")])
        }
    }
}
