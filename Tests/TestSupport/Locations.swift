import Foundation

/// Where the project's built executables and tools are.
public enum Locations {
    /// The package root, found from this file's path.
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // Tests/TestSupport/Locations.swift
        return url.path
    }()

    /// The folder holding the built executables: beside the test bundle, or `$FPINDEX_BIN_DIR`.
    public static let binDirectory: String = {
        if let dir = ProcessInfo.processInfo.environment["FPINDEX_BIN_DIR"] { return dir }
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = me.deletingLastPathComponent()
        // On Linux the test runner is `<bin>/<package>PackageTests.xctest`; on macOS a bundle inside `<bin>`.
        while !dir.path.isEmpty, dir.path != "/" {
            if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("fpindex-dev").path) {
                return dir.path
            }
            dir.deleteLastPathComponent()
        }
        return packageRoot + "/.build/debug"
    }()

    /// A built executable of this package. Fails clearly if it was not built.
    public static func executable(_ name: String) throws -> String {
        let path = binDirectory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestFailure("\(path) is missing: build the package first (make test does)")
        }
        return path
    }

    /// nats-server: `$NATS_SERVER`, the project's tools folder (hack/setup), or the PATH.
    public static func natsServer() throws -> String {
        let candidates =
            [
                ProcessInfo.processInfo.environment["NATS_SERVER"],
                packageRoot + "/.tools/bin/nats-server",
            ] + (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/nats-server" }
        for case let path? in candidates where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        throw TestFailure("nats-server not found: run hack/setup")
    }

    /// kubectl: `$KUBECTL` or the PATH (hack/setup installs it when missing).
    public static func kubectl() throws -> String {
        let candidates =
            [ProcessInfo.processInfo.environment["KUBECTL"]]
            + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":").map { "\($0)/kubectl" }
        for case let path? in candidates where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        throw TestFailure("kubectl not found: run hack/setup")
    }

    /// A program of Debian's `prometheus` package (`prometheus`, `promtool`; hack/setup installs it):
    /// `$PROMETHEUS_BIN_DIR`, else the PATH.
    public static func prometheusTool(_ name: String) throws -> String {
        let directories =
            [ProcessInfo.processInfo.environment["PROMETHEUS_BIN_DIR"]].compactMap { $0 }
            + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":").map(String.init)
        for directory in directories where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        throw TestFailure("\(name) not found: run hack/setup (it installs Debian's prometheus package)")
    }

    /// python3 from the PATH (hack/setup's packages need it), for AcoustID's Python client.
    public static func python3() throws -> String {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
        where FileManager.default.isExecutableFile(atPath: "\(directory)/python3") {
            return "\(directory)/python3"
        }
        throw TestFailure("python3 not found")
    }

    /// The Python of hack/setup's venv, which has AcoustID's HTTP client's libraries.
    public static func toolsPython() throws -> String {
        let path = packageRoot + "/.tools/venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: path) else { throw TestFailure("\(path) not found: run hack/setup") }
        return path
    }

    /// A file under `Tests/Fixtures`.
    public static func fixture(_ path: String) -> String { packageRoot + "/Tests/Fixtures/" + path }
}
