// Frames over slices: every split point of a message for every format (frames decode exactly, only frames that span
// a split are copied, and exactly their bytes are counted; the others point into the source), frames too large,
// input that ends inside a frame, and the connection variant end to end (replies, a reset for a frame too large).
import Glibc
import Testing
@testable import ZeroCopyReactor

/// A finite sequence of slices, ending with nil or with `error`.
struct SliceSequence: AsyncSequence, Sendable {
    typealias Element = Slice
    let slices: [Slice]
    var error: ReactorError?

    init(_ slices: [Slice], error: ReactorError? = nil) {
        self.slices = slices
        self.error = error
    }

    func makeAsyncIterator() -> Iterator { Iterator(slices: slices, error: error) }

    struct Iterator: AsyncIteratorProtocol {
        let slices: [Slice]
        let error: ReactorError?
        var index = 0

        mutating func next() async throws -> Slice? {
            guard index < slices.count else {
                if let error { throw error }
                return nil
            }
            index += 1
            return slices[index - 1]
        }
    }
}

/// The bytes reported copied.
final class CopyCount: Sendable {
    private let total = Locked(0)
    private let calls = Locked(0)
    var bytes: Int { total.withLock { $0 } }
    var reports: Int { calls.withLock { $0 } }
    var counter: @Sendable (Int) -> Void {
        { n in
            self.total.withLock { $0 += n }
            self.calls.withLock { $0 += 1 }
        }
    }
}

/// A message of several frames, encoded independently of the library, with where each frame's bytes lie.
struct EncodedMessage {
    let bytes: [UInt8]
    let frames: [[UInt8]]
    /// Each frame's bytes within `bytes` (without its prefix or delimiter).
    let ranges: [Range<Int>]

    static let payloads: [[UInt8]] = [
        Array("hello".utf8), [], Array("crlf kept\r".utf8), [0x00, 0xFF, 0x7F],
        Array("a frame longer than sixteen bytes, so that one-byte reads gather it".utf8),
        (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) },  // a length above 255: both prefix bytes matter
        [0x42],
    ]

    init(_ format: FrameFormat) {
        var bytes: [UInt8] = []
        var frames: [[UInt8]] = []
        var ranges: [Range<Int>] = []
        for payload in EncodedMessage.payloads {
            switch format {
            case .lines(let delimiter):
                let line = payload.filter { $0 != delimiter }
                frames.append(line)
                ranges.append(bytes.count..<bytes.count + line.count)
                bytes += line + [delimiter]
            case .lengthPrefixed(let prefix):
                let n = payload.count
                var p: [UInt8] = prefix.width == .u16 ? [UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
                    : [UInt8(n >> 24 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
                if prefix.endianness == .little { p.reverse() }
                bytes += p
                frames.append(payload)
                ranges.append(bytes.count..<bytes.count + n)
                bytes += payload
            }
        }
        self.bytes = bytes
        self.frames = frames
        self.ranges = ranges
    }

    /// The bytes a reader must copy when the input is cut at `cuts`: those of each frame with a cut strictly inside.
    func expectedCopied(cuts: [Int]) -> Int {
        ranges.filter { r in cuts.contains { r.lowerBound < $0 && $0 < r.upperBound } }.reduce(0) { $0 + $1.count }
    }
}

let allFormats: [FrameFormat] = [
    .lines(),
    .lines(delimiter: 0x00),
    .lengthPrefixed(LengthPrefix(width: .u16, endianness: .big)),
    .lengthPrefixed(LengthPrefix(width: .u16, endianness: .little)),
    .lengthPrefixed(LengthPrefix(width: .u32, endianness: .big)),
    .lengthPrefixed(LengthPrefix(width: .u32, endianness: .little)),
]

func readAllFrames<S: AsyncSequence>(_ reader: S) async throws -> [Slice] where S.Element == Slice {
    var frames: [Slice] = []
    for try await frame in reader { frames.append(frame) }
    return frames
}

/// The error `body` throws, as a ReactorError (nil if it threw none or another).
func reactorError(_ body: () async throws -> Void) async -> ReactorError? {
    do {
        try await body()
        return nil
    } catch {
        return error as? ReactorError
    }
}

@Suite(.timeLimit(.minutes(2))) struct FramingTests {
    /// Decodes `message` cut at `cuts` and checks the frames, what was copied, and where the borrowed frames point.
    func check(_ format: FrameFormat, _ message: EncodedMessage, cuts: [Int]) async throws {
        let source = Slice(message.bytes)
        let bounds = [0] + cuts + [message.bytes.count]
        let input = zip(bounds, bounds.dropFirst()).map { source.slice($0..<$1) }
        let copies = CopyCount()
        let frames = try await readAllFrames(
            FrameReader(SliceSequence(input), format: format, maxFrameBytes: 1000, countCopied: copies.counter))
        #expect(frames.map { [UInt8]($0.bytes) } == message.frames, "\(format) cut at \(cuts)")
        #expect(copies.bytes == message.expectedCopied(cuts: cuts), "\(format) cut at \(cuts)")
        let base = source.bytes.baseAddress!
        for (frame, range) in zip(frames, message.ranges) where !range.isEmpty {
            let spans = cuts.contains { range.lowerBound < $0 && $0 < range.upperBound }
            let start = frame.bytes.baseAddress!
            let inSource = start >= base && start < base + source.count
            if spans {
                #expect(!inSource, "a spanning frame is a copy: \(format) cut at \(cuts), frame at \(range)")
            } else {
                #expect(start == base + range.lowerBound, "a frame in one slice is borrowed: \(format) \(cuts) \(range)")
            }
        }
    }

    @Test(arguments: allFormats) func everySplitPointDecodesAndCopiesOnlySpanningFrames(_ format: FrameFormat) async throws {
        let message = EncodedMessage(format)
        let n = message.bytes.count
        try await check(format, message, cuts: [])  // one slice: nothing copied
        for cut in 0...n {  // two slices (an empty one at either end)
            try await check(format, message, cuts: [cut])
        }
        try await check(format, message, cuts: Array(1..<n))  // one byte per slice
        var random = TestRandom(seed: 0xF4A3)
        for _ in 0..<50 {  // a few random cuttings into several slices, empty ones included
            let cuts = (0..<random.int(2...12)).map { _ in random.int(0...n) }.sorted()
            try await check(format, message, cuts: cuts)
        }
    }

    @Test func oneByteSlicesCopyEachSpanningFrameExactlyOnce() async throws {
        for format in allFormats {
            let message = EncodedMessage(format)
            let source = Slice(message.bytes)
            let input = (0..<message.bytes.count).map { source.slice($0..<$0 + 1) }
            let copies = CopyCount()
            _ = try await readAllFrames(
                FrameReader(SliceSequence(input), format: format, maxFrameBytes: 1000, countCopied: copies.counter))
            // One report per frame of two bytes or more: each is assembled once, whatever its number of pieces.
            #expect(copies.reports == message.frames.filter { $0.count >= 2 }.count, "\(format)")
            #expect(copies.bytes == message.frames.filter { $0.count >= 2 }.reduce(0) { $0 + $1.count })
        }
    }

    // Frames too large.

    @Test(arguments: [LengthPrefix.Width.u16, .u32]) func aPrefixOverTheLimitThrowsBeforeThePayload(
        _ width: LengthPrefix.Width
    ) async throws {
        let (stream, input) = AsyncStream<Slice>.makeStream()
        let aborted = Locked(0)
        let copies = CopyCount()
        let reader = FrameReader(
            stream, format: .lengthPrefixed(LengthPrefix(width: width)), maxFrameBytes: 100,
            countCopied: copies.counter, onFrameTooLarge: { aborted.withLock { $0 += 1 } })
        var frames = reader.makeAsyncIterator()
        let ok: [UInt8] = width == .u16 ? [0, 3, 1, 2, 3] : [0, 0, 0, 3, 1, 2, 3]
        input.yield(Slice(ok))
        #expect(try await frames.next().map { [UInt8]($0.bytes) } == [1, 2, 3])
        // Only the prefix of a 101-byte frame, in two slices; the stream stays open, so a reader that waited for
        // the payload would hang (and the time limit would fail the test).
        let prefix: [UInt8] = width == .u16 ? [0, 101] : [0, 0, 0, 101]
        input.yield(Slice(Array(prefix[..<1])))
        input.yield(Slice(Array(prefix[1...])))
        let error = await reactorError { _ = try await frames.next() }
        #expect(error == .frameTooLarge(size: 101, limit: 100))
        #expect(aborted.withLock { $0 } == 1)
        #expect(copies.bytes == 0)
        #expect(try await frames.next() == nil)  // ended after the error
        input.finish()
    }

    @Test func aPrefixAtTheLimitIsAccepted() async throws {
        let payload = [UInt8](repeating: 9, count: 100)
        let frames = try await readAllFrames(
            FrameReader(SliceSequence([Slice([0, 100] + payload)]), format: .lengthPrefixed(LengthPrefix(width: .u16)),
                        maxFrameBytes: 100))
        #expect(frames.map { [UInt8]($0.bytes) } == [payload])
    }

    @Test func aLineOverTheLimitThrows() async throws {
        let limit = 10
        let eleven = [UInt8]("abcdefghijk".utf8)
        // Without a delimiter, in one slice and across slices; with the delimiter only after the limit.
        let cases: [(input: [[UInt8]], size: Int)] = [
            ([eleven], 11),
            ([Array(eleven[..<6]), Array(eleven[6...])], 11),
            ([Array(eleven[..<10]), Array(eleven[10...]) + [0x0A]], 11),
            ([eleven + [0x0A]], 11),
            ([Array("ok\n".utf8) + eleven + [0x0A]], 11),
        ]
        for (input, size) in cases {
            let aborted = Locked(0)
            let reader = FrameReader(
                SliceSequence(input.map { Slice($0) }), format: .lines(), maxFrameBytes: limit,
                countCopied: { _ in }, onFrameTooLarge: { aborted.withLock { $0 += 1 } })
            var frames = reader.makeAsyncIterator()
            let error = await reactorError {
                while let frame = try await frames.next() { #expect([UInt8](frame.bytes) == Array("ok".utf8)) }
            }
            #expect(error == .frameTooLarge(size: size, limit: limit), "\(input)")
            #expect(aborted.withLock { $0 } == 1)
            #expect(try await frames.next() == nil)
        }
        // Exactly the limit, split before the delimiter: accepted.
        let ten = [UInt8]("abcdefghij".utf8)
        let frames = try await readAllFrames(
            FrameReader(SliceSequence([Slice(Array(ten[..<4])), Slice(Array(ten[4...])), Slice([0x0A])]),
                        format: .lines(), maxFrameBytes: limit))
        #expect(frames.map { [UInt8]($0.bytes) } == [ten])
    }

    // The end of input.

    @Test func endOfInputInsideAFrameThrowsTruncatedFrame() async throws {
        let u32 = FrameFormat.lengthPrefixed(LengthPrefix(width: .u32, endianness: .little))
        let cases: [(format: FrameFormat, input: [[UInt8]], frames: Int, bytes: Int, copied: Int)] = [
            (u32, [[2, 0]], 0, 2, 0),  // mid-prefix
            (u32, [[1, 0, 0, 0, 7, 3, 0], [0]], 1, 3, 0),  // mid-prefix after a frame, the prefix across slices
            (u32, [[10, 0, 0, 0, 1, 2]], 0, 6, 2),  // mid-payload: the 2 bytes were copied (and counted)
            (u32, [[10, 0, 0], [0, 1, 2], [3, 4]], 0, 8, 4),  // mid-payload across slices
            (u32, [[10, 0, 0, 0]], 0, 4, 0),  // the prefix only
            (.lines(), [Array("abc".utf8)], 0, 3, 0),  // mid-line
            (.lines(), [Array("x\nab".utf8), Array("cd".utf8)], 1, 4, 0),  // mid-line across slices: nothing copied yet
        ]
        for c in cases {
            let copies = CopyCount()
            var frames = FrameReader(
                SliceSequence(c.input.map { Slice($0) }), format: c.format, maxFrameBytes: 100,
                countCopied: copies.counter
            ).makeAsyncIterator()
            var decoded = 0
            let error = await reactorError { while try await frames.next() != nil { decoded += 1 } }
            #expect(error == .truncatedFrame(bytes: c.bytes), "\(c.input)")
            #expect(decoded == c.frames, "\(c.input)")
            #expect(copies.bytes == c.copied, "\(c.input)")
            #expect(try await frames.next() == nil)
        }
    }

    @Test(arguments: allFormats) func endOfInputBetweenFramesEndsCleanly(_ format: FrameFormat) async throws {
        let message = EncodedMessage(format)
        for slices in [[], [Slice(message.bytes)], [Slice(message.bytes), Slice([])]] as [[Slice]] {
            var frames = FrameReader(SliceSequence(slices), format: format, maxFrameBytes: 1000).makeAsyncIterator()
            var decoded: [[UInt8]] = []
            while let frame = try await frames.next() { decoded.append([UInt8](frame.bytes)) }
            #expect(decoded == (slices.isEmpty ? [] : message.frames))
            #expect(try await frames.next() == nil)
        }
    }

    @Test func errorsOfTheBaseSequencePropagate() async throws {
        let input = SliceSequence([Slice([0, 1, 5, 0])], error: .idleTimeout)  // a frame, then half a prefix
        let copies = CopyCount()
        var frames = FrameReader(
            input, format: .lengthPrefixed(LengthPrefix(width: .u16)), maxFrameBytes: 10, countCopied: copies.counter
        ).makeAsyncIterator()
        #expect(try await frames.next().map { [UInt8]($0.bytes) } == [5])
        let error = await reactorError { _ = try await frames.next() }
        #expect(error == .idleTimeout)
        #expect(try await frames.next() == nil)
    }

    // End to end.

    /// A handler replies to each u16-prefixed frame with its length as 4 bytes; a peer sends frames in awkward chunks,
    /// then another closes mid-frame and a third announces a frame over the limit: both are reset.
    @Test func framesOverAConnectionRepliesResetsAndCounts() async throws {
        let pool = try ReactorPool(configuration: ReactorConfiguration(loops: 1))
        let bound = AsyncValue<SocketAddress>()
        let failures = Locked<[ReactorError]>([])
        let tooLarge = AsyncValue<Bool>()
        let truncated = AsyncValue<Bool>()
        let format = FrameFormat.lengthPrefixed(LengthPrefix(width: .u16, endianness: .big))
        let server = Task {
            try await pool.serve(host: "127.0.0.1", port: 0, onListening: { bound.set($0) }) { connection in
                do {
                    for try await frame in connection.frames(format, maxFrameBytes: 1024) {
                        let n = UInt32(frame.count)
                        try await connection.write(Slice([UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]))
                    }
                } catch let error as ReactorError {
                    failures.withLock { $0.append(error) }
                    if case .frameTooLarge = error { tooLarge.set(true) }
                    if case .truncatedFrame = error { truncated.set(true) }
                    throw error
                }
            }
        }
        let address = try await bound.value

        let sizes = [0, 1, 5, 1024, 300, 2, 700, 0, 3]
        var random = TestRandom(seed: 77)
        let wire = sizes.flatMap { n in [UInt8(n >> 8), UInt8(n & 0xFF)] + random.bytes(n) }
        let replies = try await onThread { () throws -> ([UInt8], [UInt8]) in
            let peer = try RawPeer(connectingTo: address)
            var one: Int32 = 1
            setsockopt(peer.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
            let reader = Box<[UInt8]>()
            runThread { reader.set(peer.read(exactly: 4 * sizes.count)) }
            var offset = 0
            var chunk = 1
            while offset < wire.count {  // chunks of 1, 2, 3, ... bytes: cuts inside prefixes and payloads
                let end = min(wire.count, offset + chunk)
                peer.send(Array(wire[offset..<end]))
                offset = end
                chunk = chunk % 13 + 1
            }
            let replies = reader.wait() ?? []
            peer.shutdownWrite()
            return (replies, peer.readAll())
        }
        var expected: [UInt8] = []
        for n in sizes { expected += [0, 0, UInt8(n >> 8), UInt8(n & 0xFF)] }
        #expect(replies.0 == expected)
        #expect(replies.1.isEmpty)  // a clean end between frames: the handler returned, a graceful close
        let copied = await offThread { pool.counters()[0].bytesCopied }
        #expect(copied <= sizes.reduce(0, +))  // at most every payload once (exact counts are the split tests')

        // A peer that closes mid-frame: the handler sees truncatedFrame, throws, and the connection is reset.
        let midFrame = try await onThread { () throws -> (Int, Int32) in
            let peer = try RawPeer(connectingTo: address)
            peer.send([0, 10, 1, 2, 3])
            peer.shutdownWrite()
            var buffer = [UInt8](repeating: 0, count: 16)
            let n = buffer.withUnsafeMutableBytes { recv(peer.fd, $0.baseAddress, $0.count, 0) }
            return (n, errno)
        }
        _ = try await truncated.value
        #expect(midFrame.0 == -1 && midFrame.1 == ECONNRESET)

        // A frame over the limit: the connection is aborted at the prefix, the peer sees a reset.
        let oversize = try await onThread { () throws -> (Int, Int32) in
            let peer = try RawPeer(connectingTo: address)
            peer.send([0x07, 0xD0])  // 2000 > 1024; no payload follows, and the write side stays open
            var buffer = [UInt8](repeating: 0, count: 16)
            let n = buffer.withUnsafeMutableBytes { recv(peer.fd, $0.baseAddress, $0.count, 0) }
            return (n, errno)
        }
        _ = try await tooLarge.value
        #expect(oversize.0 == -1 && oversize.1 == ECONNRESET)
        #expect(failures.withLock { $0 } == [.truncatedFrame(bytes: 5), .frameTooLarge(size: 2000, limit: 1024)])
        let aborted = await offThread { pool.counters()[0].connectionsAborted }
        #expect(aborted >= 2)

        await stopServing(server, pool)
    }
}
