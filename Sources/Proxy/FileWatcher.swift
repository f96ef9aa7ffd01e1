import Foundation
import ServiceLifecycle

/// Calls `changed` with the files' contents when any of them changes (a Kubernetes Secret
/// volume is rewritten in place by the kubelet): bearer tokens and TLS certificates are
/// reloaded without a restart. A file that cannot be read is passed as nil.
struct FileWatcher: Service, CustomStringConvertible {
    var description: String { "FileWatcher(\(paths.joined(separator: ", ")))" }

    let paths: [String]
    let interval: Duration
    let changed: @Sendable ([Data?]) -> Void

    func run() async throws {
        var last = paths.map { FileManager.default.contents(atPath: $0) }
        while !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                return
            }
            let contents = paths.map { FileManager.default.contents(atPath: $0) }
            guard contents != last else { continue }
            last = contents
            changed(contents)
        }
    }
}
