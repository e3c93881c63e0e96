// Running the built `zcr` from a test: find it next to the test bundle (or $ZCR_BINARY), run it on a thread of its
// own (with ChildProcess: a deadline, no Foundation Process), and capture its exit status, stdout and stderr.
@_exported public import ChildProcess
import Foundation

/// What running `zcr` printed and how it exited.
public struct ZcrRun: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var stderrLines: [Substring] { stderr.split(separator: "\n") }
}

public enum Zcr {
    public struct NotFound: Error, CustomStringConvertible {
        public let description: String
    }

    /// The `zcr` built next to this test bundle (`swift build --build-tests` builds every product), or $ZCR_BINARY.
    public static func path() throws -> String {
        if let env = ProcessInfo.processInfo.environment["ZCR_BINARY"] { return env }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        for _ in 0..<4 {  // the bundle may sit inside an .xctest directory
            let candidate = dir.appendingPathComponent("zcr").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        throw NotFound(description: "zcr was not found next to \(exe): build it first (swift build), or set ZCR_BINARY")
    }

    /// Runs `zcr arguments` to completion on a thread of its own. A run that does not end within `timeout` seconds
    /// is killed and comes back with status -1 and the reason on stderr, so a test fails instead of hanging.
    public static func run(_ arguments: [String], timeout: Double = 120) async throws -> ZcrRun {
        let path = try path()
        return await offThread {
            do {
                let out = try ChildProcess.run([path] + arguments, timeout: timeout)
                return ZcrRun(status: out.status, stdout: out.stdoutText, stderr: out.stderrText)
            } catch {
                return ZcrRun(status: -1, stdout: "", stderr: "\(error)")
            }
        }
    }
}
