// The report's new parts: tick labels that never repeat, wording for its reader, sizes and output paths checked
// before any work, and the memcpy counter's exact counts (its shared object loaded privately into this process).
import Foundation
import Glibc
import Testing

@testable import ZeroCopyProfiler

@Suite struct LiveReportTests {
    @Test(arguments: [0.21, 0.5, 1.3, 2.0, 10.0, 11.2, 0.004])
    func tickLabelsAreDistinctAndEvenlySpaced(seconds: Double) {
        let chart = SVGChart(
            title: "t", series: [.init(name: "a", color: "#000", points: [(0, 1), (seconds, 2)])],
            window: (0, seconds), yLabel: { "\($0)" })
        let labels = chart.tickLabels()
        #expect(Set(labels).count == labels.count, "\(labels)")
        #expect(labels.count >= 4 && labels.count <= 11, "\(labels)")
        let values = labels.map { Double($0.dropLast(2))! }
        let steps = zip(values.dropFirst(), values).map { $0 - $1 }
        #expect(steps.allSatisfy { abs($0 - steps[0]) < 1e-9 }, "\(labels)")
        #expect(chart.render().contains(">\(labels[1])</text>"))
    }

    @Test func theSeedWindowsTicksReadInHundredths() {
        let chart = SVGChart(
            title: "t", series: [.init(name: "a", color: "#000", points: [(0, 1), (0.21, 2)])],
            window: (0.01, 0.21), yLabel: { "\($0)" })
        #expect(chart.tickLabels() == ["0.00 s", "0.05 s", "0.10 s", "0.15 s", "0.20 s"])
    }

    @Test func procStatusFieldsAreReadByName() {
        let text = "Name:\tzcr\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nVmRSSx:\t9 kB\n"
        #expect(ProcFiles.kilobytes(field: "VmRSS:", in: text) == 1024)
        #expect(ProcFiles.kilobytes(field: "VmHWM:", in: text) == 2048)
        #expect(ProcFiles.kilobytes(field: "VmSize:", in: text) == nil)
        #expect(ProcFiles.kilobytes(field: "Name:", in: text) == nil, "no digits: no number")
        #expect(ProcessMemory.read().map { $0.rss > 0 && $0.peak >= $0.rss } == true)
    }

    @Test func oneLineJSONRoundTripsThroughTheParser() throws {
        let value = JSONValue.object([
            ("plain", .string("/tmp/a.sock")), ("escaped", .string("a\"b\\c\nd\u{1}é")), ("n", .int(-5)),
            ("u", .uint(UInt64.max)), ("d", .double(0.25)), ("none", .null), ("list", .array([.bool(true), .int(1)])),
        ])
        let line = value.renderLine()
        #expect(line.hasPrefix(#"{"plain":"/tmp/a.sock","escaped":"a\"b\\c\nd\u0001é","n":-5,"#))
        #expect(!line.contains("\n"))
        let back = try JSONValue.parse(line)
        #expect(back["escaped"]?.stringValue == "a\"b\\c\nd\u{1}é")
        #expect(back["u"]?.uint64Value == UInt64.max)
        #expect(back["d"]?.doubleValue == 0.25)
        #expect(back["none"]?.isNull == true)
        #expect(back["list"]?.arrayValue?.count == 2)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(#"{"a":1"#) }
    }

    @Test func theReportSpeaksToItsReader() {
        let page = craftedReport(ReportRenderingTests.window(allocated: 0)).html()
        #expect(!page.contains("issue"))
        #expect(page.contains("<h3>Targets for this scenario</h3>"))
    }

    /// tools/check-report in headless Chromium: a real report passes, a page with a script error and an empty chart
    /// fails. Skipped where Chromium is not installed (tools/setup chromium installs it; the test never does).
    @Test func checkReportRendersInChromium() async throws {
        guard access("/usr/bin/chromium", X_OK) == 0 else {
            try Test.cancel("skipped: chromium is not installed (tools/setup chromium)")
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let good = temporaryPath("good.html")
        let bad = temporaryPath("bad.html")
        defer {
            unlink(good)
            unlink(bad)
        }
        var report = craftedReport(ReportRenderingTests.window(allocated: 0))
        report.timeline.append(report.timeline[0])
        report.timeline[1].seconds = 2
        try report.html().write(toFile: good, atomically: true, encoding: .utf8)
        try #"<html><body>Zero copy: <svg class="chart"></svg><script>throw new Error("boom")</script></body></html>"#
            .write(toFile: bad, atomically: true, encoding: .utf8)
        let script = root.appendingPathComponent("tools/check-report").path
        let (ok, broken) = try await onThread {
            (try ChildProcess.run([script, good], timeout: 90), try ChildProcess.run([script, bad], timeout: 90))
        }
        #expect(ok.status == 0, "\(ok.stderrText)")
        #expect(ok.stdoutText.contains("ok (3 charts)"))
        #expect(broken.status == 1)
        #expect(broken.stderrText.contains("Uncaught Error: boom"))
        #expect(broken.stderrText.contains("is empty"))
    }

    @Test func aPayloadThatCannotFitIsRefusedBeforeAnyWork() throws {
        var options = ProfileOptions(scenario: .seedLarge)
        options.payloadBytes = 1 << 50  // a petabyte: larger than any MemAvailable
        let problem = try #require(options.memoryProblem())
        #expect(problem.hasPrefix("--payload-mib 1073741824 needs 1024.0 TiB but only "))
        #expect(problem.contains("(MemAvailable): refusing to start"))
        options.payloadBytes = 1 << 20
        #expect(options.memoryProblem() == nil)
    }

    @Test func zcrRefusesAHugePayloadAndAnUnwritableReportAtOnce() async throws {
        let huge = try await Zcr.run(["profile", "--scenario", "seed-large", "--payload-mib", "300000000"])
        #expect(huge.status == 2)
        #expect(huge.stderrLines.count == 1, "\(huge.stderr)")
        #expect(huge.stderr.contains("refusing to start"))
        #expect(huge.stdout.isEmpty, "refused before any work: no progress line, no summary")
        let unwritable = try await Zcr.run([
            "profile", "--scenario", "seed-large", "--payload-mib", "8", "--report", "/nonexistent-dir/r.html",
        ])
        #expect(unwritable.status == 2)
        #expect(unwritable.stderr == "zcr profile: --report /nonexistent-dir/r.html: No such file or directory\n")
        #expect(unwritable.stdout.isEmpty, "checked before the run, so nothing ran: \(unwritable.stdout)")
    }

    /// The counter's shared object, loaded with RTLD_LOCAL (so it replaces nothing here); its memcpy and memmove
    /// called directly count exactly the calls at or above the threshold, per thread.
    @Test func theMemcpyCounterCountsBytesPerThreadAboveTheThreshold() throws {
        let exe = try Zcr.path()
        let library = URL(fileURLWithPath: exe).deletingLastPathComponent()
            .appendingPathComponent("libZeroCopyMemcpyCounter.so").path
        let handle = try #require(dlopen(library, RTLD_NOW | RTLD_LOCAL), "\(String(cString: dlerror()))")
        typealias Copy = @convention(c) (UnsafeMutableRawPointer?, UnsafeRawPointer?, Int) -> UnsafeMutableRawPointer?
        typealias Thread = @convention(c) () -> UnsafeMutableRawPointer?
        typealias Threshold = @convention(c) () -> Int
        let memcpy = unsafeBitCast(try #require(dlsym(handle, "memcpy")), to: Copy.self)
        let memmove = unsafeBitCast(try #require(dlsym(handle, "memmove")), to: Copy.self)
        let thread = unsafeBitCast(try #require(dlsym(handle, "zcr_memcpy_counter_thread")), to: Thread.self)
        let threshold = unsafeBitCast(try #require(dlsym(handle, "zcr_memcpy_counter_threshold")), to: Threshold.self)
        #expect(threshold() == 512)

        let counts = offThreadSync {
            let slot = MemcpySlot(base: UnsafeRawPointer(thread()!))
            let before = slot.read()
            let a = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 16)
            let b = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 16)
            defer { a.deallocate(); b.deallocate() }
            memset(b, 7, 8192)
            _ = memcpy(a, b, 4096)
            _ = memcpy(a, b, 511)  // below the threshold: not counted
            _ = memcpy(a, b, 512)
            _ = memmove(a + 1, a, 1000)
            #expect(a.load(fromByteOffset: 1000, as: UInt8.self) == 7)
            let after = slot.read()
            return (after.memcpyBytes - before.memcpyBytes, after.memcpyCalls - before.memcpyCalls,
                    after.memmoveBytes - before.memmoveBytes, after.memmoveCalls - before.memmoveCalls)
        }
        #expect(counts.0 == 4096 + 512)
        #expect(counts.1 == 2)
        #expect(counts.2 == 1000)
        #expect(counts.3 == 1)
        // Another thread has a slot of its own, and the first one's counts stay where they were.
        let other = offThreadSync { UInt(bitPattern: thread()) }
        let again = offThreadSync { UInt(bitPattern: thread()) }
        #expect(other != again)
    }
}

/// Runs `body` on a new thread and returns its result (a thread of its own: its own counter slot).
private final class ResultBox<T>: @unchecked Sendable {
    // Written by the thread before it ends, read after the join.
    var value: T?
}

func offThreadSync<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
    let box = ResultBox<T>()
    let tid = startThread { box.value = body() }
    pthread_join(tid, nil)
    return box.value!
}
