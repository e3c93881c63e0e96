// ChildProcess, which runs zcr, Python and the C programs for the tests and the benchmarks: both outputs in full,
// the exit status or signal, and a deadline that kills the child's whole process group instead of hanging.
import Glibc
import Testing

@Suite struct ChildProcessTests {
    @Test func bothOutputsAndTheExitStatusComeBack() throws {
        // More than a pipe holds on both outputs at once: neither may block the other.
        let run = try ChildProcess.run(
            ["/bin/sh", "-c", "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2; echo; echo last; exit 3"],
            timeout: 60)
        #expect(run.termination == .exited(3))
        #expect(run.stdout.count == 300_000 + 6)
        #expect(run.stderr.count == 200_000)
        #expect(run.stdoutText.hasSuffix("\nlast\n"))
    }

    @Test func linesAreReadAsTheyArriveAndInputReachesTheChild() throws {
        let child = try ChildProcess(["/bin/sh", "-c", "echo ready; read line; echo got $line"], stdinPipe: true)
        #expect(try child.readLine(timeout: 60) == "ready")
        child.send("hello")
        #expect(try child.readLine(timeout: 60) == "got hello")
        #expect(try child.finish(timeout: 60).termination == .exited(0))
    }

    @Test func aChildThatNeverEndsIsKilledAndTheErrorNamesIt() throws {
        // The shell's grandchild holds the output pipe open too, so the end of output never comes by itself.
        let child = try ChildProcess(["/bin/sh", "-c", "echo started; sleep 300 & wait"])
        #expect(try child.readLine(timeout: 60) == "started")
        let error = #expect(throws: ChildProcessError.self) { try child.finish(timeout: 0.3) }
        #expect(error?.description.contains("/bin/sh -c echo started; sleep 300 & wait") == true)
        #expect(error?.description.contains("did not finish within 0.3 s and was killed") == true)
    }

    @Test func aSignalIsReportedAsASignal() throws {
        let child = try ChildProcess(["/bin/sh", "-c", "echo up; exec sleep 300"])
        #expect(try child.readLine(timeout: 60) == "up")
        child.signal(SIGTERM)
        let end = try child.finish(timeout: 60)
        #expect(end.termination == .signalled(SIGTERM))
        #expect(end.status == 128 + SIGTERM)
    }

    @Test func aMissingProgramIsAnErrorNotACrash() {
        #expect(throws: ChildProcessError.self) { try ChildProcess(["/nonexistent/zcr-no-such-program"]) }
    }
}
