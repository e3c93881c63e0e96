// What a connection tells its application. A handler belongs to one connection and is called only on that
// connection's loop thread, one callback at a time; it may write, close or abort from any callback.

public protocol ConnectionHandler: AnyObject {
    /// The connection is established (accepted, or a client connect completed).
    func connectionOpened(_ connection: Connection)
    /// Bytes arrived. `bytes` is valid only during this call; keep them with `bytes.retainedSlice()`.
    func connection(_ connection: Connection, didRead bytes: InboundBytes)
    /// The peer closed its write side. The peer's end of input never ends our output: the default,
    /// `connection.closeAfterOutput()`, sends what is queued and keeps accepting writes (a handler answering
    /// writability goes on) until nothing is pending, then closes. A handler that writes later from elsewhere (a
    /// timer, another thread) overrides this and closes when it is done.
    func connectionDidReachEnd(_ connection: Connection)
    /// The pool is shutting down (graceful drain). The default, `connection.closeAfterOutput()`, lets what is in
    /// progress finish. Whatever is still open at the drain's deadline is aborted: its peer sees a reset.
    func connectionWillDrain(_ connection: Connection)
    /// The pending bytes crossed the high watermark (false) or fell back to the low watermark (true).
    func connection(_ connection: Connection, writabilityChanged isWritable: Bool)
    /// Called exactly once, last. `error` is nil after a graceful close, `.aborted` after `abort()`, or what failed.
    func connectionClosed(_ connection: Connection, error: ReactorError?)
}

extension ConnectionHandler {
    public func connectionOpened(_ connection: Connection) {}
    public func connection(_ connection: Connection, didRead bytes: InboundBytes) {}
    public func connectionDidReachEnd(_ connection: Connection) { connection.closeAfterOutput() }
    public func connectionWillDrain(_ connection: Connection) { connection.closeAfterOutput() }
    public func connection(_ connection: Connection, writabilityChanged isWritable: Bool) {}
    public func connectionClosed(_ connection: Connection, error: ReactorError?) {}
}

/// Per-connection counters (loop only; read them in a callback or through `Connection.statistics()`).
public struct ConnectionStats: Sendable, Equatable {
    public var bytesRead = 0
    public var write = FlushStats()
    public init() {}
}
