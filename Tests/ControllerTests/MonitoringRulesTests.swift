import Foundation
import TestSupport
import Testing

/// The alert rules of manifests/monitoring/: valid for Prometheus (`promtool check rules`), each
/// alert firing and staying silent where its unit tests say (`promtool test rules`), the
/// prometheus-operator copy identical to the plain file, and each alert explained in the README.
@Suite("Monitoring: alert rules", .timeLimit(.minutes(2)))
struct MonitoringRulesTests {
    static let directory = Locations.packageRoot + "/manifests/monitoring"

    /// Runs a program to its end; its status and both outputs.
    static func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32?, output: String) {
        let process = try ChildProcess(name: (executable as NSString).lastPathComponent, executable: executable, arguments: arguments)
        let status = await process.waitForExit(timeout: .seconds(60))
        if status == nil { await process.stop() }
        let output = process.output
        TemporaryDirectory.remove((process.stdoutPath as NSString).deletingLastPathComponent)
        return (status, output)
    }

    static func alertNames() throws -> [String] {
        let rules = try String(contentsOfFile: directory + "/fpindex-rules.yaml", encoding: .utf8)
        return rules.split(separator: "\n").compactMap { line in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            return trimmed.hasPrefix("- alert: ") ? String(trimmed.dropFirst("- alert: ".count)) : nil
        }
    }

    @Test func promtoolChecksTheRules() async throws {
        let (status, output) = try await Self.run(
            try Locations.prometheusTool("promtool"), ["check", "rules", Self.directory + "/fpindex-rules.yaml"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("SUCCESS: \(try Self.alertNames().count) rules found"), "\(output)")
    }

    @Test func promtoolUnitTestsPass() async throws {
        let (status, output) = try await Self.run(
            try Locations.prometheusTool("promtool"), ["test", "rules", Self.directory + "/fpindex-rules-test.yaml"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("SUCCESS"), "\(output)")
    }

    /// At least one evaluation where the alert fires and one where it does not, per alert.
    @Test func everyAlertHasAFiringAndASilentCase() throws {
        let tests = try String(contentsOfFile: Self.directory + "/fpindex-rules-test.yaml", encoding: .utf8)
        // Each evaluation: `alertname: X` then `exp_alerts: []` (silent) or `exp_alerts:` with a list (firing).
        var firing: Set<String> = []
        var silent: Set<String> = []
        let lines = tests.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        for (number, line) in lines.enumerated() where line.hasPrefix("alertname: ") {
            let name = String(line.dropFirst("alertname: ".count))
            guard number + 1 < lines.count else { continue }
            if lines[number + 1] == "exp_alerts: []" {
                silent.insert(name)
            } else if lines[number + 1] == "exp_alerts:" {
                firing.insert(name)
            }
        }
        let names = try Self.alertNames()
        #expect(names.count == 11, "\(names)")
        for name in names {
            #expect(firing.contains(name), "no case where \(name) fires")
            #expect(silent.contains(name), "no case where \(name) stays silent")
        }
    }

    @Test func thePrometheusRuleIsGeneratedFromTheRulesFile() async throws {
        let (status, output) = try await Self.run(Locations.packageRoot + "/hack/monitoring-rules", ["--check"])
        #expect(status == 0, "prometheusrule.yaml differs from fpindex-rules.yaml: run hack/monitoring-rules\n\(output)")
    }

    @Test func everyAlertHasARunbookSection() throws {
        let readme = try String(contentsOfFile: Locations.packageRoot + "/README.md", encoding: .utf8)
        for name in try Self.alertNames() {
            #expect(readme.contains("#### \(name)\n"), "README has no runbook section for \(name)")
        }
    }
}
