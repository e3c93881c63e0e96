// The write chain without a socket, for micro-benchmarks (Benchmarks/): append from any thread, flush through a
// fake syscall that reports how many bytes "the kernel" took. SPI: not part of the library's public API.

import Glibc

@_spi(Benchmarks)
public final class WriteChainProbe: @unchecked Sendable {
    let chain = WriteChain()
    let iov = IOVecArray()
    public private(set) var stats = FlushStats()

    public init() {}

    /// Appends one slice (any thread). True when the chain went from idle to non-empty.
    @discardableResult
    public func append(_ slice: consuming Slice) -> Bool {
        chain.append(slice) == .becameNonEmpty
    }

    /// Appends a message in one atomic step (any thread).
    @discardableResult
    public func append(_ message: inout OutboundMessage) -> Bool {
        chain.append(&message) == .becameNonEmpty
    }

    /// Flushes everything queued (one consumer thread only). `accept(iovecs, bytes)` returns the bytes taken.
    /// `accept` should capture nothing (a closure with a context would be allocated when it is passed here, and the
    /// allocation budgets count every malloc of a flush).
    public func flush(budget: Int = .max, accept: @escaping (_ iovecs: Int, _ bytes: Int) -> Int) {
        var s = FlushStats()
        let io = ProbeIO(accept: accept)
        while true {
            let outcome = chain.flush(iov: iov, budget: budget, stats: &s, io: io)
            if outcome != .wouldBlock { break }
        }
        stats += s
    }

    public var pendingBytes: Int { chain.pending }
}

/// The probe's "kernel": takes what `accept` says.
private struct ProbeIO: FlushIO {
    let accept: (_ iovecs: Int, _ bytes: Int) -> Int
    func send(_ iov: UnsafeMutableBufferPointer<iovec>, zeroCopy: Bool) throws(SystemError) -> IOResult<Int> {
        .processed(accept(iov.count, iov.reduce(0) { $0 + $1.iov_len }))
    }
}
