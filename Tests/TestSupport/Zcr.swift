// Running the built `zcr` from a test: find it next to the test bundle (or $ZCR_BINARY), run it on a thread of its
// own, and capture its exit status, stdout and stderr.
public import Foundation
import Glibc
import Synchronization

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

    /// Runs `zcr arguments` to completion on a thread of its own.
    public static func run(_ arguments: [String]) async throws -> ZcrRun {
        let path = try path()
        return await offThread {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: path)
            p.arguments = arguments
            let out = Pipe()
            let err = Pipe()
            p.standardOutput = out
            p.standardError = err
            do { try p.run() } catch { return ZcrRun(status: -1, stdout: "", stderr: "cannot run \(path): \(error)") }
            let errData = Mutex(Data())
            let errThread = startThread { errData.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
            let outData = out.fileHandleForReading.readDataToEndOfFile()
            pthread_join(errThread, nil)
            p.waitUntilExit()
            return ZcrRun(
                status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                stderr: String(decoding: errData.withLock { $0 }, as: UTF8.self))
        }
    }
}
