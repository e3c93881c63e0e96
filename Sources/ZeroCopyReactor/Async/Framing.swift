// Frames over a sequence of slices: lines ending in a delimiter, and payloads behind a u16/u32 length prefix. This
// file owns the decoding and its one copy; it never writes to a slice's memory and never does I/O.
//
// Invariants:
// - Borrowed: a frame that lies wholly inside one input slice is `slice.slice(range)` of it, sharing its owner (for
//   `AsyncConnection.inbound`, the loop's read buffer). The unread tail of a slice is kept as that slice plus an
//   offset, never copied. A slice is dropped as soon as its last byte was decoded, so its read buffer can go back.
// - Copied and counted: a frame whose bytes lie in two or more input slices is assembled once, into one array, and
//   yielded as `Slice(array)`; exactly the frame's bytes (payload only, never a length prefix or a delimiter) are
//   reported to `countCopied`, once, when the frame is complete (or, for a frame cut short by the end of input or
//   too large, the bytes already copied, when decoding stops). A length prefix split across slices is gathered in
//   an integer, not a buffer; a line split across slices waits as slices until its delimiter arrives, and is then
//   copied into an array of its exact size. A line in more than `maxPieces` pieces (a peer trickling bytes) is
//   gathered into one growing array instead, so what waits is bounded by `maxFrameBytes`, not by the peer's count
//   of reads; its bytes are still counted once.
// - Bounded: no frame longer than `maxFrameBytes` is ever assembled. A length prefix above it throws at once, before
//   its payload is read; a line throws once its bytes without a delimiter exceed it.
// - Unsafe memory: only reads through `slice.bytes`, during the call that holds the slice.

/// How a byte stream is cut into frames.
public enum FrameFormat: Sendable, Equatable {
    /// Frames end with `delimiter` (newline by default). A frame excludes the delimiter; anything before it, such as
    /// a "\r" of a CRLF line ending, is kept: the caller decides what it means.
    case lines(delimiter: UInt8 = 0x0A)
    /// Each frame is a length prefix followed by that many payload bytes. A frame is the payload, without its prefix.
    case lengthPrefixed(LengthPrefix)
}

/// The length prefix of a length-prefixed frame: its width and byte order. The length counts the payload only.
public struct LengthPrefix: Sendable, Equatable {
    public enum Width: Sendable, Equatable {
        /// Two bytes: payloads of at most 65,535 bytes.
        case u16
        /// Four bytes.
        case u32

        public var byteCount: Int {
            switch self {
            case .u16: return 2
            case .u32: return 4
            }
        }
    }

    public enum Endianness: Sendable, Equatable {
        /// Most significant byte first (network byte order).
        case big
        case little
    }

    public var width: Width
    public var endianness: Endianness

    public init(width: Width, endianness: Endianness = .big) {
        self.width = width
        self.endianness = endianness
    }
}

/// Frames read from a sequence of slices, as slices: borrowed when a frame lies inside one input slice, assembled
/// once (and counted as copied) when it spans several.
///
/// The sequence ends (returns nil) when its base ends between frames. It throws
/// ``ReactorError/truncatedFrame(bytes:)`` when the base ends inside a frame, ``ReactorError/frameTooLarge(size:limit:)``
/// when a frame is longer than `maxFrameBytes`, and whatever the base throws; after throwing it returns nil.
public struct FrameReader<Base: AsyncSequence>: AsyncSequence where Base.Element == Slice {
    public typealias Element = Slice

    let base: Base
    let format: FrameFormat
    let maxFrameBytes: Int
    let countCopied: @Sendable (Int) -> Void
    /// Run before a frameTooLarge is thrown (the connection variant aborts the connection).
    let onFrameTooLarge: (@Sendable () -> Void)?

    /// Frames of `format` from `base`. `countCopied` hears the bytes of each frame that had to be assembled from
    /// several slices. `maxFrameBytes` bounds every frame's length (not counting a prefix or a delimiter).
    public init(
        _ base: Base, format: FrameFormat, maxFrameBytes: Int,
        countCopied: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.init(base, format: format, maxFrameBytes: maxFrameBytes, countCopied: countCopied, onFrameTooLarge: nil)
    }

    init(
        _ base: Base, format: FrameFormat, maxFrameBytes: Int, countCopied: @escaping @Sendable (Int) -> Void,
        onFrameTooLarge: (@Sendable () -> Void)?
    ) {
        precondition(maxFrameBytes >= 0, "maxFrameBytes must not be negative (\(maxFrameBytes))")
        self.base = base
        self.format = format
        self.maxFrameBytes = maxFrameBytes
        self.countCopied = countCopied
        self.onFrameTooLarge = onFrameTooLarge
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(
            base: base.makeAsyncIterator(), decoder: FrameDecoder(format: format, maxFrameBytes: maxFrameBytes),
            countCopied: countCopied, onFrameTooLarge: onFrameTooLarge)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        var decoder: FrameDecoder
        let countCopied: @Sendable (Int) -> Void
        let onFrameTooLarge: (@Sendable () -> Void)?
        /// Set once the sequence ended or threw: from then on, nil.
        var finished = false

        public mutating func next() async throws -> Slice? {
            if finished { return nil }
            while true {
                do {
                    if let frame = try decoder.nextFrame() {
                        if frame.copied > 0 { countCopied(frame.copied) }
                        return frame.slice
                    }
                } catch {
                    throw failing(error)
                }
                let slice: Slice?
                do {
                    slice = try await base.next()
                } catch {
                    stop()
                    throw error
                }
                guard let slice else {
                    do { try decoder.finish() } catch { throw failing(error) }
                    finished = true
                    return nil
                }
                decoder.feed(slice)
            }
        }

        /// Ends the sequence: counts the bytes copied for an unfinished frame and drops every slice held.
        private mutating func stop() {
            finished = true
            let copied = decoder.abandon()
            if copied > 0 { countCopied(copied) }
        }

        /// Ends the sequence with `error` (aborting the connection for a frame too large) and returns it to throw.
        private mutating func failing(_ error: ReactorError) -> ReactorError {
            stop()
            if case .frameTooLarge = error { onFrameTooLarge?() }
            return error
        }
    }
}

extension FrameReader: Sendable where Base: Sendable {}

extension AsyncConnection {
    /// The inbound bytes as frames of `format`: each yielded slice borrows the loop's read buffer when the frame came
    /// in one read, and is a copy of exactly the frame's bytes (counted in ``LoopCounters/bytesCopied``) when it
    /// spanned reads. A frame longer than `maxFrameBytes` aborts the connection (the peer sees a reset) and throws
    /// ``ReactorError/frameTooLarge(size:limit:)``. One consumer at a time, like ``inbound``.
    public func frames(_ format: FrameFormat, maxFrameBytes: Int) -> FrameReader<Inbound> {
        let connection = self.connection
        let loop = connection.loop
        return FrameReader(
            inbound, format: format, maxFrameBytes: maxFrameBytes,
            countCopied: { loop.bytesCopied.wrappingAdd($0, ordering: .relaxed) },
            onFrameTooLarge: { connection.abort() })
    }
}
