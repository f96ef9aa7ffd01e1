import Foundation

/// Debian's Prometheus server as a child process on a free loopback port, with its storage in
/// a temporary directory removed by `stop()`.
public final class PrometheusServer: Sendable {
    public let process: ChildProcess
    public let directory: String
    public let url: String
    public var api: PrometheusAPI { PrometheusAPI(baseURL: url) }

    /// Starts Prometheus with `configuration` (prometheus.yml text) and waits until it is ready.
    public static func start(configuration: String) async throws -> PrometheusServer {
        let directory = try TemporaryDirectory.make(prefix: "prometheus")
        let configPath = directory + "/prometheus.yml"
        try configuration.write(toFile: configPath, atomically: true, encoding: .utf8)
        let port = try FreePort.find()
        let process = try ChildProcess(
            name: "prometheus", executable: try Locations.prometheusTool("prometheus"),
            arguments: [
                "--config.file=\(configPath)", "--storage.tsdb.path=\(directory)/data",
                "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
            ])
        let server = PrometheusServer(process: process, directory: directory, url: "http://127.0.0.1:\(port)")
        do {
            let http = TestHTTPClient(baseURL: server.url)
            try await eventually(timeout: .seconds(60), "Prometheus to be ready\n\(process.output)", interval: .milliseconds(100)) {
                guard process.isRunning else { throw TestFailure("prometheus exited\n\(process.output)") }
                return try await http.request(.GET, "/-/ready").status == 200 ? true : nil
            }
        } catch {
            await server.stop()
            throw error
        }
        return server
    }

    private init(process: ChildProcess, directory: String, url: String) {
        self.process = process
        self.directory = directory
        self.url = url
    }

    public func stop() async {
        await process.stop()
        TemporaryDirectory.remove(directory)
    }
}

/// The parts of Prometheus's HTTP API the tests use.
public struct PrometheusAPI: Sendable {
    public let http: TestHTTPClient

    public init(baseURL: String) { http = TestHTTPClient(baseURL: baseURL) }

    /// One series of an instant query's answer: its labels and value.
    public struct Sample: Sendable {
        public var labels: [String: String]
        public var value: String
    }

    /// Why a query was refused (a parse error is `bad_data`).
    public struct QueryError: Error, CustomStringConvertible {
        public var description: String
    }

    /// `GET /api/v1/query`: the series an instant query returns (vector, matrix as its last value,
    /// scalar as one unlabelled sample). Throws `QueryError` when Prometheus refuses the query.
    public func query(_ expression: String) async throws -> [Sample] {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "+&=;#")
        let encoded = expression.addingPercentEncoding(withAllowedCharacters: allowed) ?? expression
        let reply = try await http.request(.GET, "/api/v1/query?query=\(encoded)", headers: [("Connection", "close")])
        let body = try reply.jsonObject()
        guard body["status"] as? String == "success", let data = body["data"] as? [String: Any] else {
            throw QueryError(description: "\(expression): \(body["errorType"] ?? "?"): \(body["error"] ?? reply.text)")
        }
        switch data["resultType"] as? String {
        case "vector":
            return (data["result"] as? [[String: Any]] ?? []).map {
                Sample(labels: $0["metric"] as? [String: String] ?? [:], value: ($0["value"] as? [Any])?.last as? String ?? "")
            }
        case "matrix":
            return (data["result"] as? [[String: Any]] ?? []).map {
                Sample(
                    labels: $0["metric"] as? [String: String] ?? [:],
                    value: (($0["values"] as? [[Any]])?.last?.last as? String) ?? "")
            }
        case "scalar":
            return [Sample(labels: [:], value: (data["result"] as? [Any])?.last as? String ?? "")]
        default:
            return []
        }
    }

    /// `GET /api/v1/targets`: each active target's scrape URL and health (`up`, `down`, `unknown`).
    public func targets() async throws -> [(url: String, health: String, error: String)] {
        let body = try await http.request(.GET, "/api/v1/targets?state=active", headers: [("Connection", "close")]).jsonObject()
        let active = (body["data"] as? [String: Any])?["activeTargets"] as? [[String: Any]] ?? []
        return active.map { ($0["scrapeUrl"] as? String ?? "", $0["health"] as? String ?? "", $0["lastError"] as? String ?? "") }
    }
}
