// The frame decoder as a plain value: slices in, frames out, no I/O and no suspension, so every split of the input
// can be replayed in a test. Borrowing, copying and bounds are the invariants written at the top of Framing.swift.
// It only reads through `slice.bytes`; it never writes to an input slice's memory.

struct FrameDecoder {
    struct Frame {
        let slice: Slice
        /// Bytes copied to assemble the frame: 0 for a frame borrowed from one input slice.
        let copied: Int
    }

    /// Above this many pending pieces a line is gathered into one array (see Framing.swift).
    static let maxPieces = 16

    let format: FrameFormat
    let maxFrameBytes: Int

    /// The slice being decoded and how far: `current.bytes[offset...]` is unread. Emptied as soon as it is read out.
    private var current = FrameDecoder.empty
    private var offset = 0

    // Length-prefixed frames.
    /// The prefix bytes read so far, as an integer in the prefix's byte order, and how many there were.
    private var prefixValue: UInt32 = 0
    private var prefixCount = 0
    /// The payload length, once the whole prefix was read.
    private var payloadLength: Int?
    /// The payload being assembled across slices (empty with no capacity while none is).
    private var assembly: [UInt8] = []
    private var assembling = false

    // Lines.
    /// The bytes of the unfinished line, in order: `gathered` first, then `pieces`. `pendingBytes` is their total.
    private var gathered: [UInt8] = []
    private var pieces: [Slice] = []
    private var pendingBytes = 0

    private static let empty = Slice(unsafeUnownedBytes: UnsafeRawBufferPointer(start: nil, count: 0))

    init(format: FrameFormat, maxFrameBytes: Int) {
        self.format = format
        self.maxFrameBytes = maxFrameBytes
    }

    private var available: Int { current.count - offset }

    /// The next input slice; call only once the previous one is read out (`nextFrame` returned nil).
    mutating func feed(_ slice: Slice) {
        precondition(available == 0, "FrameDecoder fed before the last slice was read out")
        current = slice
        offset = 0
    }

    /// The next whole frame, or nil when more input is needed.
    mutating func nextFrame() throws(ReactorError) -> Frame? {
        defer { if offset == current.count && current.count > 0 { current = FrameDecoder.empty; offset = 0 } }
        switch format {
        case .lines(let delimiter): return try nextLine(delimiter)
        case .lengthPrefixed(let prefix): return try nextPayload(prefix)
        }
    }

    /// End of input: throws truncatedFrame if a frame was begun (no frame is left to yield: `nextFrame` returned nil).
    func finish() throws(ReactorError) {
        let begun: Int
        switch format {
        case .lines: begun = pendingBytes + available
        case .lengthPrefixed(let prefix):
            begun = payloadLength == nil ? prefixCount : prefix.width.byteCount + assembly.count
        }
        if begun > 0 { throw .truncatedFrame(bytes: begun) }
    }

    /// Stops decoding: drops every slice and buffer held and returns the bytes that were copied for the unfinished
    /// frame (to be counted).
    mutating func abandon() -> Int {
        let copied: Int
        switch format {
        case .lines: copied = gathered.count
        case .lengthPrefixed: copied = assembling ? assembly.count : 0
        }
        current = FrameDecoder.empty
        offset = 0
        assembly = []
        assembling = false
        gathered = []
        pieces = []
        pendingBytes = 0
        payloadLength = nil
        prefixCount = 0
        return copied
    }

    // Length-prefixed.

    private mutating func nextPayload(_ prefix: LengthPrefix) throws(ReactorError) -> Frame? {
        if payloadLength == nil {
            guard try readPrefix(prefix) else { return nil }
        }
        let length = payloadLength!
        if !assembling {
            if available >= length {  // the whole payload is here: borrow it
                let frame = current.slice(offset..<offset + length)
                offset += length
                payloadLength = nil
                return Frame(slice: frame, copied: 0)
            }
            guard available > 0 else { return nil }  // the payload may yet come in one slice
            assembly.reserveCapacity(length)  // the frame's exact size, known from the prefix
            assembling = true
        }
        let take = min(available, length - assembly.count)
        assembly.append(contentsOf: UnsafeRawBufferPointer(rebasing: current.bytes[offset..<offset + take]))
        offset += take
        guard assembly.count == length else { return nil }
        let frame = Slice(assembly)
        assembly = []
        assembling = false
        payloadLength = nil
        return Frame(slice: frame, copied: length)
    }

    /// Reads prefix bytes; true once the whole prefix was read and its length checked.
    private mutating func readPrefix(_ prefix: LengthPrefix) throws(ReactorError) -> Bool {
        let width = prefix.width.byteCount
        let bytes = current.bytes
        while prefixCount < width {
            guard offset < bytes.count else { return false }
            let byte = UInt32(bytes[offset])
            switch prefix.endianness {
            case .big: prefixValue = prefixValue << 8 | byte
            case .little: prefixValue |= byte << (8 * UInt32(prefixCount))
            }
            prefixCount += 1
            offset += 1
        }
        let length = Int(prefixValue)
        prefixValue = 0
        prefixCount = 0
        if length > maxFrameBytes { throw .frameTooLarge(size: length, limit: maxFrameBytes) }
        payloadLength = length
        return true
    }

    // Lines.

    private mutating func nextLine(_ delimiter: UInt8) throws(ReactorError) -> Frame? {
        guard available > 0 else { return nil }
        let bytes = current.bytes
        guard let end = bytes[offset...].firstIndex(of: delimiter) else {
            // No delimiter yet: the tail waits as a slice (no copy).
            let pending = pendingBytes + available
            if pending > maxFrameBytes { throw .frameTooLarge(size: pending, limit: maxFrameBytes) }
            if pieces.count == FrameDecoder.maxPieces { gatherPieces() }
            pieces.append(current.slice(offset..<bytes.count))
            pendingBytes = pending
            offset = bytes.count
            return nil
        }
        let length = pendingBytes + (end - offset)
        if length > maxFrameBytes { throw .frameTooLarge(size: length, limit: maxFrameBytes) }
        let start = offset
        offset = end + 1
        if pendingBytes == 0 {  // the whole line is here: borrow it
            return Frame(slice: current.slice(start..<end), copied: 0)
        }
        if start == end && gathered.isEmpty && pieces.count == 1 {  // only the delimiter came late: still borrowed
            let line = pieces.removeLast()
            pendingBytes = 0
            return Frame(slice: line, copied: 0)
        }
        // The line spans slices: one array of its exact size, each byte copied once.
        var line: [UInt8] = []
        swap(&line, &gathered)
        line.reserveCapacity(length)  // exact size; a gathered start may move once here (it was counted as the line)
        for piece in pieces { line.append(contentsOf: piece.bytes) }
        line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
        pieces.removeAll(keepingCapacity: true)
        pendingBytes = 0
        return Frame(slice: Slice(line), copied: length)
    }

    /// Too many pieces wait: append them to `gathered` (a peer trickling bytes would otherwise make a slice per read).
    private mutating func gatherPieces() {
        for piece in pieces { gathered.append(contentsOf: piece.bytes) }
        pieces.removeAll(keepingCapacity: true)
    }
}
