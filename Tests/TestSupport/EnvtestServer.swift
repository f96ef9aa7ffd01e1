import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL

/// A real Kubernetes control plane on loopback, as controller-runtime's envtest runs one: etcd
/// (Debian's `etcd-server`), `kube-apiserver` and `kube-controller-manager` from the folder named
/// by `KUBE_ASSETS`, on free ports, with a CA, a serving certificate, an admin token and an audit
/// log of every write. There is no kubelet and no scheduler: pods stay Pending.
public final class EnvtestServer: Sendable {
    /// The folder with `kube-apiserver` and `kube-controller-manager`, when the environment names one.
    public static var assetsDirectory: String? {
        guard let directory = ProcessInfo.processInfo.environment["KUBE_ASSETS"], !directory.isEmpty else { return nil }
        return directory
    }

    /// Why the envtest suites cannot run here, or nil when they can.
    public static var unavailableReason: String? {
        guard let directory = assetsDirectory else {
            return "KUBE_ASSETS is not set (a folder with kube-apiserver and kube-controller-manager v1.28+)"
        }
        for binary in ["kube-apiserver", "kube-controller-manager"]
        where !FileManager.default.isExecutableFile(atPath: "\(directory)/\(binary)") {
            return "\(directory)/\(binary) is missing"
        }
        if etcdPath == nil { return "etcd is not installed (Debian package etcd-server; hack/setup installs it)" }
        if openSSLPath == nil { return "openssl is not installed" }
        return nil
    }

    /// Whether the envtest suites can run (for `.enabled(if:)`).
    public static var available: Bool { unavailableReason == nil }

    static var etcdPath: String? { executableInPath("etcd", override: "ETCD") }
    static var openSSLPath: String? { executableInPath("openssl", override: nil) }

    static func executableInPath(_ name: String, override: String?) -> String? {
        let environment = ProcessInfo.processInfo.environment
        let candidates =
            [override.flatMap { environment[$0] }]
            + (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map { "\($0)/\(name)" } + ["/usr/bin/\(name)"]
        return candidates.compactMap { $0 }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    public let directory: String
    public let port: Int
    /// The admin's bearer token (group `system:masters`).
    public let token: String
    /// PEM file of the CA that signed the serving certificate.
    public let caPath: String
    public let auditLogPath: String
    let etcd: ChildProcess
    let apiServer: ChildProcess
    let controllerManager: ChildProcess
    public let http: HTTPClient

    public var url: String { "https://127.0.0.1:\(port)" }
    public var caCertificatePEM: String { (try? String(contentsOfFile: caPath, encoding: .utf8)) ?? "" }

    /// Starts etcd, the API server and the controller manager and waits until the API server is
    /// ready and the `default` service account exists (pods can be created).
    public static func start() async throws -> EnvtestServer {
        if let reason = unavailableReason { throw TestFailure("envtest cannot start: \(reason)") }
        let assets = assetsDirectory!
        let directory = try TemporaryDirectory.make(prefix: "envtest")
        do {
            try await makeCertificates(in: directory)
            let token = "envtest-admin-\(UUID().uuidString.prefix(8))"
            try "\(token),admin,admin-uid,system:masters\n".write(
                toFile: directory + "/tokens.csv", atomically: true, encoding: .utf8)
            // Every write (not reads): enough to count who wrote what, small enough to read.
            try """
            apiVersion: audit.k8s.io/v1
            kind: Policy
            omitStages: [RequestReceived]
            rules:
            - level: Metadata
              verbs: [create, update, patch, delete, deletecollection]
            - level: None
            """.write(toFile: directory + "/audit-policy.yaml", atomically: true, encoding: .utf8)

            let etcd = try await startEtcd(directory: directory)
            do {
                let (apiServer, port) = try await startAPIServer(
                    assets: assets, directory: directory, etcdURL: etcd.clientURL, token: token)
                do {
                    let http = try makeHTTPClient(caPath: directory + "/ca.crt")
                    let server = EnvtestServer(
                        directory: directory, port: port, token: token, etcd: etcd.process, apiServer: apiServer,
                        controllerManager: try startControllerManager(
                            assets: assets, directory: directory, port: port, token: token),
                        http: http)
                    do {
                        try await server.waitUntilUsable()
                    } catch {
                        await server.stop()
                        throw error
                    }
                    return server
                } catch {
                    await apiServer.stop()
                    throw error
                }
            } catch {
                await etcd.process.stop()
                throw error
            }
        } catch {
            TemporaryDirectory.remove(directory)
            throw error
        }
    }

    private init(
        directory: String, port: Int, token: String, etcd: ChildProcess, apiServer: ChildProcess,
        controllerManager: ChildProcess, http: HTTPClient
    ) {
        self.directory = directory
        self.port = port
        self.token = token
        self.caPath = directory + "/ca.crt"
        self.auditLogPath = directory + "/audit.log"
        self.etcd = etcd
        self.apiServer = apiServer
        self.controllerManager = controllerManager
        self.http = http
    }

    /// A kubeconfig for the admin, with `namespace` as the context's default.
    public func kubeconfig(namespace: String = "default") -> String {
        """
        apiVersion: v1
        kind: Config
        clusters:
        - name: envtest
          cluster:
            server: \(url)
            certificate-authority: \(caPath)
        users:
        - name: admin
          user:
            token: \(token)
        contexts:
        - name: envtest
          context:
            cluster: envtest
            user: admin
            namespace: \(namespace)
        current-context: envtest

        """
    }

    /// One request to the API server as the admin.
    public func request(
        _ method: HTTPMethod, _ path: String, contentType: String? = nil, body: [UInt8]? = nil
    ) async throws -> HTTPReply {
        try await TestHTTPClient(baseURL: url, client: http).request(
            method, path, body: body,
            headers: [("Authorization", "Bearer \(token)"), ("Accept", "application/json")]
                + (contentType.map { [("Content-Type", $0)] } ?? []))
    }

    /// The audit log's events (writes only), oldest first: verb, user agent, request URI, status code.
    public func auditedWrites() -> [AuditedRequest] {
        guard let text = try? String(contentsOfFile: auditLogPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let verb = object["verb"] as? String, let uri = object["requestURI"] as? String
            else { return nil }
            let code = (object["responseStatus"] as? [String: Any])?["code"] as? Int ?? 0
            return AuditedRequest(
                verb: verb, userAgent: object["userAgent"] as? String ?? "", requestURI: uri, code: code,
                stage: object["stage"] as? String ?? "")
        }
    }

    /// The processes' logs, for a failure message.
    public var output: String { [apiServer.output, controllerManager.output].joined(separator: "\n") }

    public func stop() async {
        await controllerManager.stop(timeout: .seconds(5))
        await apiServer.stop(timeout: .seconds(10))
        await etcd.stop(timeout: .seconds(5))
        try? await http.shutdown()
        TemporaryDirectory.remove(directory)
    }

    // MARK: Start-up

    func waitUntilUsable() async throws {
        try await eventually(timeout: .seconds(60), "kube-apiserver /readyz\n\(apiServer.output.suffix(4000))") {
            guard apiServer.isRunning else { throw TestFailure("kube-apiserver exited\n\(apiServer.output.suffix(8000))") }
            let reply = try? await request(.GET, "/readyz")
            return reply?.status == 200 ? true : nil
        }
        // Pods can only be created once the service-account controller made `default`.
        try await eventually(timeout: .seconds(60), "the default service account\n\(controllerManager.output.suffix(4000))") {
            guard controllerManager.isRunning else {
                throw TestFailure("kube-controller-manager exited\n\(controllerManager.output.suffix(8000))")
            }
            let reply = try? await request(.GET, "/api/v1/namespaces/default/serviceaccounts/default")
            return reply?.status == 200 ? true : nil
        }
    }

    /// An HTTP client that trusts the CA in `caPath` (and verifies hostnames).
    public static func makeHTTPClient(caPath: String) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(caPath)
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = tls
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// A CA, a serving certificate for 127.0.0.1/localhost, and the service-account key pair.
    static func makeCertificates(in directory: String) async throws {
        let openssl = openSSLPath!
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(
            toFile: directory + "/san.cnf", atomically: true, encoding: .utf8)
        let steps: [[String]] = [
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                "-subj", "/CN=envtest-ca",
            ],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
                "server.crt", "-days", "2", "-extfile", "san.cnf",
            ],
            ["genrsa", "-out", "sa.key", "2048"],
            ["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
        ]
        for step in steps {
            let process = try SpawnedProcess.spawn(
                openssl, arguments: step, environment: ProcessInfo.processInfo.environment, workingDirectory: directory,
                output: .discard, error: .discard)
            guard let status = await process.waitForExit(), status.code == 0 else {
                throw TestFailure("openssl \(step.joined(separator: " ")) failed (\(process.exitStatus.map { "\($0)" } ?? "?"))")
            }
        }
    }

    struct StartedEtcd {
        let process: ChildProcess
        let clientURL: String
    }

    static func startEtcd(directory: String) async throws -> StartedEtcd {
        for attempt in 1...5 {
            let client = try FreePort.find()
            let peer = try FreePort.find()
            let clientURL = "http://127.0.0.1:\(client)"
            let peerURL = "http://127.0.0.1:\(peer)"
            let process = try ChildProcess(
                name: "etcd", executable: etcdPath!,
                arguments: [
                    "--data-dir", directory + "/etcd-\(attempt)", "--name", "envtest",
                    "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                    "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
                    "--initial-cluster", "envtest=\(peerURL)", "--log-level", "warn",
                ])
            let healthy: Bool? = try? await eventually(timeout: .seconds(30), "etcd to be healthy") {
                guard process.isRunning else { throw TestFailure("etcd exited\n\(process.output)") }
                let reply = try? await TestHTTPClient(baseURL: clientURL).request(.GET, "/health")
                return reply.map { $0.text.contains(#""health":"true""#) } == true ? true : nil
            }
            if healthy == true { return StartedEtcd(process: process, clientURL: clientURL) }
            await process.stop()
            if attempt == 5 { throw TestFailure("etcd did not start\n\(process.output)") }
        }
        throw TestFailure("etcd did not start")
    }

    static func startAPIServer(assets: String, directory: String, etcdURL: String, token: String) async throws -> (
        ChildProcess, Int
    ) {
        for attempt in 1...5 {
            let port = try FreePort.find()
            let process = try ChildProcess(
                name: "kube-apiserver", executable: assets + "/kube-apiserver",
                arguments: [
                    "--etcd-servers", etcdURL, "--secure-port", String(port), "--bind-address", "127.0.0.1",
                    // The `kubernetes` Service's endpoint may not be a loopback address; nothing dials it here.
                    "--advertise-address", advertiseAddress(),
                    "--tls-cert-file", directory + "/server.crt", "--tls-private-key-file", directory + "/server.key",
                    "--client-ca-file", directory + "/ca.crt", "--token-auth-file", directory + "/tokens.csv",
                    "--authorization-mode", "RBAC",
                    "--service-account-issuer", "https://kubernetes.default.svc",
                    "--service-account-key-file", directory + "/sa.pub",
                    "--service-account-signing-key-file", directory + "/sa.key",
                    "--service-cluster-ip-range", "10.0.0.0/24",
                    "--audit-policy-file", directory + "/audit-policy.yaml",
                    "--audit-log-path", directory + "/audit.log",
                    "--audit-log-mode", "blocking",
                ])
            let ready: Bool? = try? await eventually(timeout: .seconds(5), "kube-apiserver to listen") {
                guard process.isRunning else { return false }
                return FreePort.isFree(port) ? nil : true
            }
            if ready == true { return (process, port) }
            let output = process.output
            await process.stop()
            if attempt == 5 || !output.contains("address already in use") {
                throw TestFailure("kube-apiserver did not start\n\(output.suffix(8000))")
            }
        }
        throw TestFailure("kube-apiserver did not start")
    }

    static func startControllerManager(assets: String, directory: String, port: Int, token: String) throws
        -> ChildProcess
    {
        let kubeconfig = directory + "/controller-manager.kubeconfig"
        try """
        apiVersion: v1
        kind: Config
        clusters:
        - name: envtest
          cluster: {server: "https://127.0.0.1:\(port)", certificate-authority: "\(directory)/ca.crt"}
        users:
        - name: admin
          user: {token: "\(token)"}
        contexts:
        - name: envtest
          context: {cluster: envtest, user: admin}
        current-context: envtest

        """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        return try ChildProcess(
            name: "kube-controller-manager", executable: assets + "/kube-controller-manager",
            arguments: [
                "--kubeconfig", kubeconfig, "--controllers", "*", "--leader-elect=false",
                "--service-account-private-key-file", directory + "/sa.key", "--root-ca-file", directory + "/ca.crt",
                "--use-service-account-credentials=false", "--secure-port", String(try FreePort.find()),
                "--cert-dir", directory + "/controller-manager-certs",
            ])
    }

    /// A non-loopback address of this host (the API server refuses a loopback one to advertise).
    static func advertiseAddress() -> String {
        var addresses: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&addresses) == 0, let first = addresses else { return "192.0.2.1" }
        defer { freeifaddrs(addresses) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET) else { continue }
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            guard
                getnameinfo(
                    address, socklen_t(MemoryLayout<sockaddr_in>.size), &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
                    == 0
            else { continue }
            let text = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !text.hasPrefix("127.") { return text }
        }
        // TEST-NET-1: never routed; the API server only records it.
        return "192.0.2.1"
    }
}

/// One write the API server's audit log recorded.
public struct AuditedRequest: Sendable, CustomStringConvertible {
    public var verb: String
    public var userAgent: String
    public var requestURI: String
    public var code: Int
    public var stage: String
    public var description: String { "\(verb) \(requestURI) -> \(code) (\(userAgent))" }
}
