import Foundation
import ProcessSpawning
import TestSupport
import Testing

/// Children start as a container runtime starts them: nothing blocked, nothing ignored, no
/// descriptor of ours. (Foundation's `Process` handed them the spawning thread's mask, where a
/// Swift worker thread blocks nearly every signal: such a child never stopped on SIGTERM.)
@Suite("Spawned processes", .timeLimit(.minutes(1)))
struct ProcessSpawningTests {
    /// The mask and ignored set of a live process, from /proc.
    static func signalState(_ pid: Int32) throws -> (blocked: String, ignored: String) {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func field(_ name: String) -> String {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }.map { String($0.dropFirst(name.count + 1)) }?
                .trimmingCharacters(in: .whitespaces) ?? "?"
        }
        return (field("SigBlk"), field("SigIgn"))
    }

    /// Starts `sh -c script` (which must print `ready` once set up) with its output in
    /// `directory`, and returns once it is ready.
    static func startShell(_ script: String, in directory: String) async throws -> SpawnedProcess {
        let process = try SpawnedProcess.spawn(
            "/bin/sh", arguments: ["-c", script], environment: ["PATH": "/usr/bin:/bin"], output: .file(directory + "/out"))
        try await eventually("the program runs") {
            ((try? String(contentsOfFile: directory + "/out", encoding: .utf8)) ?? "").contains("ready") ? true : nil
        }
        return process
    }

    /// Sampled on a program that never touches its own mask (a shell blocks signals for a
    /// moment whenever it forks).
    @Test func nothingIsBlockedIgnoredOrInherited() async throws {
        let process = try SpawnedProcess.spawn("/bin/sleep", arguments: ["30"], environment: [:])
        defer { process.signal(SIGKILL) }
        // Once sleep sleeps: after exec (before it, the child is still a copy of us), and after
        // its start-up, which opens files of its own for a moment (the locale archive).
        try await eventually("sleep sleeps") {
            (try? String(contentsOfFile: "/proc/\(process.pid)/wchan", encoding: .utf8))?.contains("nanosleep") == true ? true : nil
        }
        let state = try Self.signalState(process.pid)
        #expect(state.blocked == "0000000000000000", "blocked: \(state.blocked)")
        // None of signals 1-31 ignored (glibc's spawn keeps its two internal real-time signals, 32
        // and 33, ignored: no program can use them).
        #expect((UInt64(state.ignored, radix: 16) ?? .max) & 0x7fff_ffff == 0, "ignored: \(state.ignored)")
        // Nothing of ours but the standard descriptors.
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(process.pid)/fd").sorted()
        #expect(descriptors == ["0", "1", "2"], "\(descriptors)")
        // SIGTERM at its default disposition ends it.
        process.signal(SIGTERM)
        #expect(await process.waitForExit(timeout: .seconds(10)) == ExitStatus(code: 128 + SIGTERM, signal: SIGTERM))
    }

    /// A program that handles SIGTERM gets it and stops (under a second on an idle machine; the
    /// bound leaves room for a loaded one, far below the grace periods that would end in SIGKILL).
    @Test func aProgramThatTrapsSIGTERMStops() async throws {
        let directory = try TemporaryDirectory.make(prefix: "spawn")
        defer { TemporaryDirectory.remove(directory) }
        // A shell, not Swift: it stops on SIGTERM through its trap, as fpindex through its handler.
        let process = try await Self.startShell("trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done", in: directory)
        let started = ContinuousClock.now
        process.signal(SIGTERM)
        let status = await process.waitForExit(timeout: .seconds(10))
        #expect(status == ExitStatus(code: 7))
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func stopKillsAProgramThatIgnoresSIGTERMAfterTheGracePeriod() async throws {
        let directory = try TemporaryDirectory.make(prefix: "spawn")
        defer { TemporaryDirectory.remove(directory) }
        let process = try await Self.startShell("trap '' TERM; echo ready; while :; do sleep 0.05; done", in: directory)
        let started = ContinuousClock.now
        let status = await process.stop(grace: .milliseconds(300))
        #expect(status == ExitStatus(code: 128 + SIGKILL, signal: SIGKILL))
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        #expect(!process.isRunning)
    }

    /// Shutdown paths run in cancelled tasks: stop still gives the program its grace period.
    @Test func stopInACancelledTaskStillWaitsOutTheGracePeriod() async throws {
        let directory = try TemporaryDirectory.make(prefix: "spawn")
        defer { TemporaryDirectory.remove(directory) }
        // It takes a moment to stop after SIGTERM, as a server draining its work does.
        let process = try await Self.startShell("trap 'sleep 0.5; exit 7' TERM; echo ready; while :; do sleep 0.05; done", in: directory)
        let stopping = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await process.stop(grace: .seconds(30))
        }
        #expect(await stopping.value == ExitStatus(code: 7))
    }

    @Test func exitCodesEnvironmentAndWorkingDirectory() async throws {
        let directory = try TemporaryDirectory.make(prefix: "spawn")
        defer { TemporaryDirectory.remove(directory) }
        let process = try SpawnedProcess.spawn(
            "/bin/sh", arguments: ["-c", "echo \"$GREETING $(pwd)\"; exit 3"], environment: ["GREETING": "hello"],
            workingDirectory: directory, output: .file(directory + "/out"))
        #expect(await process.waitForExit() == ExitStatus(code: 3))
        let resolved = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        #expect(try String(contentsOfFile: directory + "/out", encoding: .utf8) == "hello \(resolved)\n")
        #expect(throws: SpawnError.self) {
            try SpawnedProcess.spawn("/nonexistent/program", arguments: [], environment: [:])
        }
    }
}
