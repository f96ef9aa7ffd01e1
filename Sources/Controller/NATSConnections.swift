import Foundation
import JetStream
import Kubernetes
import Logging

/// NATS connections for the clusters the controller manages, one per distinct server list and
/// credentials, reused across reconciles. Credentials come from the cluster's Secrets and are
/// written to files only this process can read (cnats takes file paths); they never reach logs.
public actor NATSConnections {
    private let kubernetes: KubernetesClient
    private let logger: Logger
    private let directory: String
    private let connectTimeout: Duration
    private var clients: [String: NATSClient] = [:]

    public init(kubernetes: KubernetesClient, logger: Logger, connectTimeout: Duration = .seconds(3)) throws {
        self.kubernetes = kubernetes
        self.logger = logger
        self.connectTimeout = connectTimeout
        directory = NSTemporaryDirectory() + "fpindex-controller-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// A connected client for `model`'s NATS settings.
    /// - Throws: `ControllerError.nats` with what went wrong (secret missing, unreachable, ...).
    public func client(for model: ClusterModel) async throws -> NATSClient {
        var configuration = NATSConfiguration(
            servers: model.natsURL.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) },
            name: "fpindex-controller", timeout: connectTimeout)
        var keyParts = [model.natsURL]
        switch model.controllerCredentials {
        case .file(let creds)?:
            let (path, digest) = try await secretFile(model.namespace, creds.name, creds.key ?? "creds")
            configuration.credentialsFile = path
            keyParts.append(digest)
        case .user(let secretName)?:
            let secret = try await secretData(model.namespace, secretName)
            guard let user = secret["username"], let password = secret["password"] else {
                throw ControllerError.nats("secret \(model.namespace)/\(secretName) needs the keys username and password")
            }
            configuration.user = String(decoding: user, as: UTF8.self)
            configuration.password = String(decoding: password, as: UTF8.self)
            keyParts.append(Self.digest(user + [0] + password))
        case nil:
            break
        }
        if let tls = model.tlsSecret {
            let (path, digest) = try await secretFile(model.namespace, tls.name, tls.key ?? "ca.crt")
            configuration.tlsCAFile = path
            configuration.tlsRequired = true
            keyParts.append(digest)
        }
        let key = keyParts.joined(separator: "|")
        if let client = clients[key] {
            if client.state == .connected { return client }
            clients[key] = nil
            await client.close()
        }
        do {
            let client = try await NATSClient.connect(configuration, logger: logger)
            clients[key] = client
            return client
        } catch {
            throw ControllerError.nats("cannot connect to NATS at \(configuration.redactedServers): \(error)")
        }
    }

    /// Drops connections that failed mid-use, so the next reconcile reconnects.
    public func dropBrokenConnections() async {
        for (key, client) in clients where client.state != .connected {
            clients[key] = nil
            await client.close()
        }
    }

    public func closeAll() async {
        for client in clients.values { await client.close() }
        clients = [:]
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A Secret's decoded data.
    private func secretData(_ namespace: String, _ name: String) async throws -> [String: [UInt8]] {
        let secret: Secret
        do {
            secret = try await kubernetes.get(Secret.self, namespace: namespace, name: name)
        } catch let error as KubernetesError where error.reason == .notFound {
            throw ControllerError.nats("secret \(namespace)/\(name) does not exist")
        }
        return (secret.data ?? [:]).compactMapValues { Data(base64Encoded: $0).map { Array($0) } }
    }

    /// Distinct contents need distinct connections (a rotated secret reconnects).
    static func digest(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 14_695_981_039_346_656_037
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211 }
        return String(hash, radix: 16)
    }

    private func secretFile(_ namespace: String, _ name: String, _ key: String) async throws -> (String, String) {
        guard let bytes = try await secretData(namespace, name)[key].map({ Data($0) }) else {
            throw ControllerError.nats("secret \(namespace)/\(name) has no key \(key)")
        }
        let path = "\(directory)/\(namespace).\(name).\(key)"
        let existing = FileManager.default.contents(atPath: path)
        if existing != bytes {
            guard FileManager.default.createFile(atPath: path, contents: bytes, attributes: [.posixPermissions: 0o600])
            else { throw ControllerError.nats("cannot write the NATS secret to \(path)") }
        }
        return (path, Self.digest(Array(bytes)))
    }
}

/// The controller's own errors (API and JetStream errors keep their types). An unusable spec
/// is not an error: it becomes a condition and an event (`ClusterModel.specProblems`).
public enum ControllerError: Error, CustomStringConvertible, Sendable {
    /// NATS unreachable, or a secret it needs missing: conditions say so; retried with backoff.
    case nats(String)

    public var description: String {
        switch self {
        case .nats(let message): return message
        }
    }
}
