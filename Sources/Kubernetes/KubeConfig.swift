import Foundation

/// Where and how to reach an API server: the resolved form of a kubeconfig context or of the
/// in-cluster service-account settings. Secrets are held as file paths or bytes, never logged.
public struct KubernetesConfiguration: Sendable {
    /// Server base URL, e.g. `https://10.0.0.1:443` (no trailing slash).
    public var server: String
    /// The namespace of the context (or of the service account); "default" when unset.
    public var namespace: String
    public var tls: TLS
    public var credentials: Credentials
    /// Timeout for ordinary requests (watches use the server-side `timeoutSeconds`).
    public var requestTimeout: Duration = .seconds(30)
    /// The User-Agent header.
    public var userAgent: String = "fpindex-cluster"

    public struct TLS: Sendable {
        /// PEM bundle of the certificate authority; nil = the system store.
        public var certificateAuthority: PEMSource?
        /// Set only when a kubeconfig explicitly says `insecure-skip-tls-verify: true`.
        public var insecureSkipVerify: Bool = false
        /// Overrides the name checked against the server certificate.
        public var serverName: String?
        /// Client certificate authentication.
        public var clientCertificate: PEMSource?
        public var clientKey: PEMSource?

        public init(
            certificateAuthority: PEMSource? = nil, insecureSkipVerify: Bool = false, serverName: String? = nil,
            clientCertificate: PEMSource? = nil, clientKey: PEMSource? = nil
        ) {
            self.certificateAuthority = certificateAuthority
            self.insecureSkipVerify = insecureSkipVerify
            self.serverName = serverName
            self.clientCertificate = clientCertificate
            self.clientKey = clientKey
        }
    }

    /// PEM data given inline (kubeconfig `*-data`, base64-decoded) or as a file.
    public enum PEMSource: Sendable, Equatable {
        case file(String)
        case data([UInt8])
    }

    public enum Credentials: Sendable, Equatable {
        case none
        case token(String)
        /// A token file, re-read at least every `refresh` and after a 401 (projected
        /// service-account tokens rotate).
        case tokenFile(String, refresh: Duration)
        case basic(username: String, password: String)
    }

    public init(
        server: String, namespace: String = "default", tls: TLS = TLS(), credentials: Credentials = .none
    ) {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.namespace = namespace
        self.tls = tls
        self.credentials = credentials
    }
}

/// A configuration problem, with what to fix.
public struct KubernetesConfigurationError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A kubeconfig file (or the merge of several, as `KUBECONFIG=a:b` does): clusters, users and
/// contexts by name, and the current context.
public struct KubeConfig: Sendable {
    public struct Cluster: Sendable, Equatable {
        public var server: String
        public var certificateAuthority: KubernetesConfiguration.PEMSource?
        public var insecureSkipTLSVerify: Bool
        public var tlsServerName: String?
    }

    public struct User: Sendable, Equatable {
        public var token: String?
        public var tokenFile: String?
        public var clientCertificate: KubernetesConfiguration.PEMSource?
        public var clientKey: KubernetesConfiguration.PEMSource?
        public var username: String?
        public var password: String?
        /// Set when the user needs an exec or auth-provider plugin, which this client does not run.
        public var plugin: String?
    }

    public struct Context: Sendable, Equatable {
        public var cluster: String
        public var user: String?
        public var namespace: String?
    }

    public var clusters: [String: Cluster] = [:]
    public var users: [String: User] = [:]
    public var contexts: [String: Context] = [:]
    public var currentContext: String?

    public init() {}

    /// Parses kubeconfig text. Relative file paths are resolved against `directory` (the
    /// kubeconfig's own folder, as kubectl does).
    public init(yaml text: String, directory: String) throws {
        let documents: [YAMLNode]
        do {
            documents = try YAMLParser.parse(text)
        } catch {
            throw KubernetesConfigurationError("kubeconfig: \(error)")
        }
        guard let root = documents.first, case .mapping = root else {
            if documents.isEmpty || documents.first?.string == nil { return }
            throw KubernetesConfigurationError("kubeconfig: the document is not a mapping")
        }
        func path(_ value: String?) -> String? {
            guard let value, !value.isEmpty else { return nil }
            if value.hasPrefix("/") { return value }
            if value.hasPrefix("~/") {
                return (ProcessInfo.processInfo.environment["HOME"] ?? "") + value.dropFirst()
            }
            return directory + "/" + value
        }
        func pem(data: String?, file: String?, what: String) throws -> KubernetesConfiguration.PEMSource? {
            if let data, !data.isEmpty {
                guard let bytes = Data(base64Encoded: data, options: .ignoreUnknownCharacters) else {
                    throw KubernetesConfigurationError("kubeconfig: \(what) is not valid base64")
                }
                return .data(Array(bytes))
            }
            return path(file).map { .file($0) }
        }
        func named(_ key: String) throws -> [(String, YAMLNode)] {
            guard let list = root[key] else { return [] }
            if list.string == nil, case .scalar = list { return [] }  // `clusters: null`
            guard let items = list.array else {
                throw KubernetesConfigurationError("kubeconfig: \(key) must be a list")
            }
            return try items.map { item in
                guard let name = item["name"]?.string else {
                    throw KubernetesConfigurationError("kubeconfig: an entry of \(key) has no name")
                }
                return (name, item)
            }
        }
        for (name, item) in try named("clusters") {
            guard let cluster = item["cluster"], let server = cluster["server"]?.string else {
                throw KubernetesConfigurationError("kubeconfig: cluster \(name) has no server")
            }
            clusters[name] = Cluster(
                server: server,
                certificateAuthority: try pem(
                    data: cluster["certificate-authority-data"]?.string, file: cluster["certificate-authority"]?.string,
                    what: "certificate-authority-data of cluster \(name)"),
                insecureSkipTLSVerify: cluster["insecure-skip-tls-verify"]?.bool ?? false,
                tlsServerName: cluster["tls-server-name"]?.string)
        }
        for (name, item) in try named("users") {
            let user = item["user"] ?? .mapping([])
            var plugin: String?
            if user["exec"] != nil { plugin = "exec" }
            if user["auth-provider"] != nil { plugin = "auth-provider" }
            users[name] = User(
                token: user["token"]?.string,
                tokenFile: path(user["tokenFile"]?.string),
                clientCertificate: try pem(
                    data: user["client-certificate-data"]?.string, file: user["client-certificate"]?.string,
                    what: "client-certificate-data of user \(name)"),
                clientKey: try pem(
                    data: user["client-key-data"]?.string, file: user["client-key"]?.string,
                    what: "client-key-data of user \(name)"),
                username: user["username"]?.string,
                password: user["password"]?.string,
                plugin: plugin)
        }
        for (name, item) in try named("contexts") {
            guard let context = item["context"], let cluster = context["cluster"]?.string else {
                throw KubernetesConfigurationError("kubeconfig: context \(name) names no cluster")
            }
            contexts[name] = Context(
                cluster: cluster, user: context["user"]?.string, namespace: context["namespace"]?.string)
        }
        currentContext = root["current-context"]?.string.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Loads one file.
    public init(contentsOf file: String) throws {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw KubernetesConfigurationError("cannot read kubeconfig \(file): \(error.localizedDescription)")
        }
        try self.init(yaml: text, directory: (file as NSString).deletingLastPathComponent)
    }

    /// Merges files the way kubectl merges `KUBECONFIG=a:b`: the first file that sets a name or
    /// the current context wins. Missing files are skipped, as kubectl does.
    public init(files: [String]) throws {
        self.init()
        var found = false
        for file in files where !file.isEmpty && FileManager.default.fileExists(atPath: file) {
            found = true
            let next = try KubeConfig(contentsOf: file)
            clusters.merge(next.clusters) { first, _ in first }
            users.merge(next.users) { first, _ in first }
            contexts.merge(next.contexts) { first, _ in first }
            if currentContext == nil { currentContext = next.currentContext }
        }
        if !found {
            throw KubernetesConfigurationError("no kubeconfig found at \(files.joined(separator: ":"))")
        }
    }

    /// The files kubectl would read: `KUBECONFIG` (colon-separated), else `~/.kube/config`.
    public static func defaultFiles(environment: [String: String]) -> [String] {
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            return list.split(separator: ":").map(String.init)
        }
        return [(environment["HOME"] ?? "") + "/.kube/config"]
    }

    /// Resolves a context (the current one by default) into a client configuration.
    public func configuration(context name: String? = nil) throws -> KubernetesConfiguration {
        guard let contextName = name ?? currentContext else {
            throw KubernetesConfigurationError("kubeconfig has no current-context; name one with --context")
        }
        guard let context = contexts[contextName] else {
            throw KubernetesConfigurationError("kubeconfig has no context named \(contextName)")
        }
        guard let cluster = clusters[context.cluster] else {
            throw KubernetesConfigurationError("context \(contextName) names an unknown cluster \(context.cluster)")
        }
        var user = User()
        if let userName = context.user, !userName.isEmpty {
            guard let found = users[userName] else {
                throw KubernetesConfigurationError("context \(contextName) names an unknown user \(userName)")
            }
            user = found
        }
        if let plugin = user.plugin, user.token == nil, user.tokenFile == nil, user.clientCertificate == nil {
            throw KubernetesConfigurationError(
                "user \(context.user ?? "") of context \(contextName) needs an \(plugin) plugin, which is not supported; use a token, token file or client certificate"
            )
        }
        let credentials: KubernetesConfiguration.Credentials
        if let token = user.token, !token.isEmpty {
            credentials = .token(token)
        } else if let file = user.tokenFile {
            credentials = .tokenFile(file, refresh: .seconds(60))
        } else if let username = user.username, let password = user.password {
            credentials = .basic(username: username, password: password)
        } else {
            credentials = .none
        }
        guard cluster.server.hasPrefix("https://") || cluster.server.hasPrefix("http://") else {
            throw KubernetesConfigurationError("cluster \(context.cluster): server \(cluster.server) is not an http(s) URL")
        }
        return KubernetesConfiguration(
            server: cluster.server, namespace: context.namespace ?? "default",
            tls: .init(
                certificateAuthority: cluster.certificateAuthority, insecureSkipVerify: cluster.insecureSkipTLSVerify,
                serverName: cluster.tlsServerName, clientCertificate: user.clientCertificate,
                clientKey: user.clientKey),
            credentials: credentials)
    }
}

extension KubernetesConfiguration {
    /// The service-account configuration of a pod: `KUBERNETES_SERVICE_HOST`/`_PORT`, the
    /// token (re-read every minute: projected tokens rotate) and the CA, which is required:
    /// there is no fallback to skipping verification.
    /// - Parameter directory: the service-account folder (tests point it elsewhere).
    public static func inCluster(
        environment: [String: String],
        directory: String = "/var/run/secrets/kubernetes.io/serviceaccount"
    ) throws -> KubernetesConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        else {
            throw KubernetesConfigurationError(
                "not running in a cluster (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT unset); pass --kubeconfig")
        }
        let tokenPath = directory + "/token"
        let caPath = directory + "/ca.crt"
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw KubernetesConfigurationError("in-cluster: cannot read the service-account token \(tokenPath)")
        }
        guard FileManager.default.isReadableFile(atPath: caPath) else {
            throw KubernetesConfigurationError(
                "in-cluster: cannot read the cluster CA \(caPath); refusing to connect without verifying the server")
        }
        let namespace =
            (try? String(contentsOfFile: directory + "/namespace", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return KubernetesConfiguration(
            server: "https://\(hostPart):\(port)",
            namespace: namespace.flatMap { $0.isEmpty ? nil : $0 } ?? "default",
            tls: .init(certificateAuthority: .file(caPath)),
            credentials: .tokenFile(tokenPath, refresh: .seconds(60)))
    }

    /// What a command does with `--kubeconfig` and `--context`: an explicit file, else in-cluster
    /// settings when present, else `KUBECONFIG` / `~/.kube/config`.
    public static func resolve(
        kubeconfig: String?, context: String?, environment: [String: String],
        serviceAccountDirectory: String = "/var/run/secrets/kubernetes.io/serviceaccount"
    ) throws -> KubernetesConfiguration {
        if let kubeconfig, !kubeconfig.isEmpty {
            return try KubeConfig(files: [kubeconfig]).configuration(context: context)
        }
        if environment["KUBERNETES_SERVICE_HOST"] != nil {
            return try inCluster(environment: environment, directory: serviceAccountDirectory)
        }
        return try KubeConfig(files: KubeConfig.defaultFiles(environment: environment)).configuration(context: context)
    }
}
