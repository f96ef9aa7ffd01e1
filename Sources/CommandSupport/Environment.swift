import FpindexAPI
import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// Reading settings the way every executable here does: a flag wins, then the environment
/// variable, then the default.
public enum Settings {
    /// A non-empty environment variable.
    public static func environment(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }

    /// A secret from a file (trailing newline trimmed), so it never appears in `ps` or logs.
    public static func secret(file: String?, environment name: String) throws -> String? {
        if let file {
            do {
                return try String(contentsOfFile: file, encoding: .utf8).trimmingWhitespace()
            } catch {
                throw SettingsError("cannot read \(file): \(error)")
            }
        }
        return environment(name)
    }

    /// Parses `host:port` (or `:port`, or `[::1]:port`).
    public static func hostAndPort(_ text: String, flag: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw SettingsError("\(flag): '\(text)' is not host:port")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    /// Sets up logging once, for an executable: text lines on standard error at `level`
    /// (flag, else `LOG_LEVEL`, else info).
    public static func bootstrapLogging(level flag: String?) throws -> Logger.Level {
        let text = flag ?? environment(ComponentEnvironment.logLevel) ?? "info"
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            throw SettingsError("--log-level / LOG_LEVEL: unknown level '\(text)' (trace, debug, info, notice, warning, error, critical)")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return level
    }
}

/// A setting that cannot be used, named by its flag and variable.
public struct SettingsError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line breaks.
    public func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0.isNewline }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}

/// Flushes standard output, so a line printed for scripts arrives at once.
public func flushStandardOutput() {
    fflush(nil)
}

/// Prints a line on standard error: messages for the person at the terminal, apart from the
/// figures a script reads from standard output.
public func printToStandardError(_ text: String) {
    var bytes = Array((text + "\n").utf8)
    bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
}
