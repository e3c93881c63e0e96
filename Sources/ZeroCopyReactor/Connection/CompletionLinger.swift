// What is left of a connection that ended while MSG_ZEROCOPY sends still pinned its slices: the descriptor and the
// write chain, kept until the kernel's completions release every slice, or until the completion deadline.
// Invariants: the connection's handler has already been told it closed; nothing more is sent; each waiting slice
// is released exactly once (by a completion, or all at once at the deadline or at the loop's end); the descriptor
// is closed exactly once, after the last release. Loop only.
//
// Why the descriptor must stay open: completions are read from the socket's error queue, which dies with it, and
// memory released while the kernel may still read it would put whatever the caller writes there next on the wire.
// A reset is still a reset: an aborted connection is disconnected at once (connect with AF_UNSPEC sends the reset
// and drops the unsent data, whose completions then arrive), and a graceful one has its FIN sent first.
import Glibc

final class CompletionLinger: Selectable {
    private var descriptor: FileDescriptor?
    private let chain: WriteChain
    private unowned let loop: EventLoop
    private var registration: Registration?
    private var deadline: TimerID?

    private init(descriptor: consuming FileDescriptor, chain: WriteChain, loop: EventLoop) {
        self.descriptor = consume descriptor
        self.chain = chain
        self.loop = loop
    }

    /// Takes over `descriptor` and the chain's waiting slices.
    static func start(descriptor: consuming FileDescriptor, chain: WriteChain, loop: EventLoop, reset: Bool, outputDone: Bool) {
        let fd = descriptor.raw
        if reset {
            try? Sys.disconnect(fd)
        } else if !outputDone {
            try? Sys.shutdownWrite(fd)
        }
        let linger = CompletionLinger(descriptor: descriptor, chain: chain, loop: loop)
        loop.counters.zeroCopyLingering += 1
        // No events asked for: EPOLLERR (the error queue) and EPOLLHUP are always reported.
        guard let registration = try? loop.register(fd: fd, events: 0, linger) else {
            linger.finish(expired: true)
            return
        }
        linger.registration = registration
        linger.drain()
        guard linger.descriptor != nil else { return }
        linger.deadline = loop.scheduleTimer(after: loop.configuration.zeroCopyCompletionDeadlineNanos) { [linger] in
            linger.deadline = nil
            linger.finish(expired: true)
        }
    }

    func ready(events: UInt32) { drain() }

    /// Reads the completions that have arrived; finishes once no slice waits.
    private func drain() {
        guard let fd = descriptor?.raw else { return }
        var stats = FlushStats()
        loop: while chain.awaitingCount > 0 {
            switch try? Sys.readErrorQueue(fd) {
            case .zeroCopy(let low, let high, let copied)?:
                chain.completeZeroCopy(low: low, high: high, copied: copied, stats: &stats)
            case .other?: continue
            default: break loop
            }
        }
        loop.counters.write += stats
        if chain.awaitingCount == 0 { finish(expired: false) }
    }

    /// Releases what still waits (at the deadline, or when the loop ends), then closes the descriptor.
    func finish(expired: Bool) {
        guard let d = descriptor.take() else { return }
        if let t = deadline {
            loop.cancelTimer(t)
            deadline = nil
        }
        let released = chain.releaseAwaiting()
        if expired && released > 0 { loop.counters.zeroCopyDeadlineReleases += released }
        if let registration { loop.deregister(fd: d.raw, registration) }
        registration = nil
        d.close()
        loop.counters.zeroCopyLingering -= 1
    }

    /// True while it still holds the descriptor.
    var isLingering: Bool { descriptor != nil }
}
