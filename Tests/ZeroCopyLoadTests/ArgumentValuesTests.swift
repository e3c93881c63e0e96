// Command-line values: durations, sizes, counts and rates, and the exact line each bad one produces.
import Testing

@testable import ZeroCopyLoad

@Suite struct ArgumentValuesTests {
    @Test func durations() throws {
        #expect(try ArgumentValues.duration("10s", flag: "--d") == .seconds(10))
        #expect(try ArgumentValues.duration("500ms", flag: "--d") == .milliseconds(500))
        #expect(try ArgumentValues.duration("2m", flag: "--d") == .seconds(120))
        #expect(try ArgumentValues.duration("1.5s", flag: "--d") == .milliseconds(1500))
        #expect(try ArgumentValues.duration("250us", flag: "--d") == .microseconds(250))
        #expect(try ArgumentValues.duration("3", flag: "--d") == .seconds(3))
        #expect(try ArgumentValues.duration("1h", flag: "--d") == .seconds(3600))
        #expect(throws: LoadError("--d must not be negative, not -2s")) {
            try ArgumentValues.duration("-2s", flag: "--d")
        }
        #expect(throws: LoadError("--d: '10 s' is not a duration (examples: 10s, 500ms, 2m)")) {
            try ArgumentValues.duration("10 s", flag: "--d")
        }
    }

    @Test func sizesCountsRates() throws {
        #expect(try ArgumentValues.size("64", flag: "--m") == 64)
        #expect(try ArgumentValues.size("4k", flag: "--m") == 4096)
        #expect(try ArgumentValues.size("1MiB", flag: "--m") == 1 << 20)
        #expect(try ArgumentValues.count("10k", flag: "--c") == 10_000)
        #expect(try ArgumentValues.rate("2.5k", flag: "--r") == 2500)
        #expect(throws: LoadError("--c must not be negative, not -1")) { try ArgumentValues.count("-1", flag: "--c") }
        #expect(throws: LoadError("--r must be greater than 0, not 0")) { try ArgumentValues.rate("0", flag: "--r") }
        #expect(throws: LoadError("--m: '1.5k' is not a byte count (examples: 64, 4k, 1MiB)")) {
            try ArgumentValues.size("1.5k", flag: "--m")
        }
    }

    @Test func payloadMessagesAreSlicesOfOneBufferInThePattern() {
        let p = MessagePayload(messageBytes: 100)
        var stream: [UInt8] = []
        for k in 0..<10 { stream += Array(p.message(k).bytes) }
        #expect(stream == (0..<1000).map { UInt8($0 % 251) })
        stream.withUnsafeBytes { #expect(p.firstMismatch($0, streamOffset: 0) == nil) }
        stream[517] ^= 1
        stream.withUnsafeBytes { #expect(p.firstMismatch($0, streamOffset: 0) == 517) }
        // Every message borrows the same buffer: no copy per message.
        #expect(p.message(3).bytes.baseAddress == p.message(3 + 251).bytes.baseAddress)
    }
}
