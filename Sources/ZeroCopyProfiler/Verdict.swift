// The yes/no answer to "were bytes copied?", from figures alone: allocated bytes per byte sent, the library's
// bytes-copied counter, the iovec checks at the syscall boundary and the memcpy counter's bytes per byte sent. Pure logic, no measurement; it must never say yes on a figure it
// does not have (an unavailable figure fails its check).

/// The limits the verdict applies.
public struct Thresholds: Sendable, Equatable {
    public var maxAllocatedBytesPerByteSent: Double
    public var maxBytesCopied: Int
    public var maxForeignIovecs: Int
    public var maxMemcpyBytesPerByteSent: Double

    public init(
        maxAllocatedBytesPerByteSent: Double = 0.001, maxBytesCopied: Int = 0, maxForeignIovecs: Int = 0,
        maxMemcpyBytesPerByteSent: Double = 0.01
    ) {
        self.maxAllocatedBytesPerByteSent = maxAllocatedBytesPerByteSent
        self.maxBytesCopied = maxBytesCopied
        self.maxForeignIovecs = maxForeignIovecs
        self.maxMemcpyBytesPerByteSent = maxMemcpyBytesPerByteSent
    }

    public static let standard = Thresholds()
}

/// One named comparison: `value` against `limit`; `value` nil means the figure was unavailable (never passes).
public struct Check: Sendable, Equatable {
    public enum Comparison: String, Sendable {
        case atMost = "<="
        case atLeast = ">="
    }
    public var name: String
    public var value: Double?
    public var limit: Double
    public var comparison: Comparison
    public var passed: Bool
    /// Why it failed or what it means, in words.
    public var detail: String

    public init(name: String, value: Double?, limit: Double, comparison: Comparison, detail: String = "") {
        self.name = name
        self.value = value
        self.limit = limit
        self.comparison = comparison
        if let value {
            passed = comparison == .atMost ? value <= limit : value >= limit
        } else {
            passed = false
        }
        self.detail = detail
    }
}

/// The figures the verdict looks at.
public struct VerdictInput: Sendable, Equatable {
    public var bytesSent: Int
    /// nil when the allocator gave no figure (not jemalloc, or statistics off).
    public var allocatedBytesPerByteSent: Double?
    public var bytesCopied: Int
    public var verifiedIovecs: Int
    public var foreignIovecs: Int
    /// nil when the process has no memcpy counter.
    public var memcpyBytesPerByteSent: Double?
    /// Bytes sent with sendfile: from the page cache, never in user memory, so no iovec to check.
    public var sendfileBytes: Int

    public init(
        bytesSent: Int, allocatedBytesPerByteSent: Double?, bytesCopied: Int, verifiedIovecs: Int, foreignIovecs: Int,
        memcpyBytesPerByteSent: Double?, sendfileBytes: Int = 0
    ) {
        self.sendfileBytes = sendfileBytes
        self.bytesSent = bytesSent
        self.allocatedBytesPerByteSent = allocatedBytesPerByteSent
        self.bytesCopied = bytesCopied
        self.verifiedIovecs = verifiedIovecs
        self.foreignIovecs = foreignIovecs
        self.memcpyBytesPerByteSent = memcpyBytesPerByteSent
    }

    public init(_ w: WindowFigures) {
        self.init(
            bytesSent: w.bytesSent, allocatedBytesPerByteSent: w.allocatedBytesPerByteSent, bytesCopied: w.bytesCopied,
            verifiedIovecs: w.verifiedIovecs, foreignIovecs: w.foreignIovecs,
            memcpyBytesPerByteSent: w.memcpyBytesPerByteSent, sendfileBytes: w.sendfileBytes)
    }
}

/// Zero copy or not, and every check behind the answer.
public struct Verdict: Sendable, Equatable {
    public var zeroCopy: Bool
    public var checks: [Check]

    /// The checks that failed, by name ("foreign_iovecs", ...), whether on a figure or for want of one.
    public var failedChecks: [String] { checks.filter { !$0.passed }.map(\.name) }

    /// Why the answer is no, in words: "caught by foreign_iovecs, memcpy_bytes_per_byte_sent" for figures over
    /// their limits, "unavailable: ..." for checks that had no figure. Empty when the answer is yes.
    public var reason: String {
        let caught = checks.filter { !$0.passed && $0.value != nil }.map(\.name)
        let missing = checks.filter { $0.value == nil }.map(\.name)
        var parts: [String] = []
        if !caught.isEmpty { parts.append("caught by " + caught.joined(separator: ", ")) }
        if !missing.isEmpty { parts.append("unavailable: " + missing.joined(separator: ", ")) }
        return parts.joined(separator: "; ")
    }

    /// True only when allocated bytes per byte sent is at most the limit (and known), bytes copied is within its
    /// limit, the iovec checks ran and found no foreign iovec, and the memcpy counter saw at most its limit per byte
    /// sent on the reactor threads (and was there to see).
    public static func evaluate(_ input: VerdictInput, thresholds: Thresholds = .standard) -> Verdict {
        let ratioDetail: String
        if input.bytesSent == 0 {
            ratioDetail = "nothing was sent, so nothing is proven"
        } else if input.allocatedBytesPerByteSent == nil {
            ratioDetail = "unavailable: the allocator gave no per-thread figures (jemalloc is not the allocator)"
        } else {
            ratioDetail = "bytes the reactor threads allocated per byte they sent"
        }
        let checked = input.verifiedIovecs + input.foreignIovecs
        let checks = [
            Check(
                name: "allocated_bytes_per_byte_sent",
                value: input.bytesSent > 0 ? input.allocatedBytesPerByteSent : nil,
                limit: thresholds.maxAllocatedBytesPerByteSent, comparison: .atMost, detail: ratioDetail),
            Check(
                name: "bytes_copied", value: Double(input.bytesCopied), limit: Double(thresholds.maxBytesCopied),
                comparison: .atMost, detail: "the library's own count of bytes it copied before sending"),
            Check(
                name: "foreign_iovecs",
                value: checked > 0 || input.sendfileBytes > 0 ? Double(input.foreignIovecs) : nil,
                limit: Double(thresholds.maxForeignIovecs), comparison: .atMost,
                detail: checked > 0
                    ? "iovecs handed to sendmsg that did not lie inside the memory the caller appended"
                    : input.sendfileBytes > 0
                        ? "no iovec to check: the bytes went out with sendfile, from the page cache"
                        : "unavailable: no iovec was checked (verify mode off, or nothing sent)"),
            Check(
                name: "memcpy_bytes_per_byte_sent",
                value: input.bytesSent > 0 ? input.memcpyBytesPerByteSent : nil,
                limit: thresholds.maxMemcpyBytesPerByteSent, comparison: .atMost,
                detail: input.bytesSent == 0
                    ? "nothing was sent, so nothing is proven"
                    : input.memcpyBytesPerByteSent == nil
                        ? "unavailable: the memcpy counter is not in the process (preload libZeroCopyMemcpyCounter.so)"
                        : "bytes memcpy'd or memmove'd on the reactor threads (calls of at least the counter's "
                            + "threshold) per byte they sent"),
        ]
        return Verdict(zeroCopy: checks.allSatisfy(\.passed), checks: checks)
    }
}
