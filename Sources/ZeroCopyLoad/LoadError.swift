// The one error type of the load generator: a sentence for the user, naming the flag or file at fault.
// It never carries partial results; a run that started returns a LoadReport (with `failure`) instead.

/// Bad input, or a run that could not start (unresolvable target, unwritable log). `message` is one line.
public struct LoadError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
