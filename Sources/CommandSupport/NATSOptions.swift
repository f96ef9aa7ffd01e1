import ArgumentParser
import FpindexAPI
import JetStream

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// NATS connection options shared by the executables that talk to JetStream.
public struct NATSOptions: ParsableArguments {
    @Option(name: .customLong("nats-url"), help: "NATS server URLs, comma-separated (env NATS_URL; default nats://127.0.0.1:4222).")
    public var url: String?

    @Option(name: .customLong("nats-user"), help: "NATS user (env NATS_USER).")
    public var user: String?

    @Option(name: .customLong("nats-password-file"), help: "File holding the NATS password (env NATS_PASSWORD holds the password itself).")
    public var passwordFile: String?

    @Option(name: .customLong("nats-token-file"), help: "File holding a NATS token (env NATS_TOKEN holds the token itself).")
    public var tokenFile: String?

    @Option(name: .customLong("nats-creds"), help: "NATS credentials (.creds) file (env NATS_CREDS).")
    public var credentials: String?

    @Option(name: .customLong("nats-nkey"), help: "Public NKey of the NATS user (env NATS_NKEY); needs --nats-nkey-seed.")
    public var nkey: String?

    @Option(name: .customLong("nats-nkey-seed"), help: "File holding the NKey seed (env NATS_NKEY_SEED).")
    public var nkeySeed: String?

    @Option(name: .customLong("nats-tls-ca"), help: "CA bundle to verify the NATS server (env NATS_TLS_CA). Verification is always on.")
    public var tlsCA: String?

    @Option(name: .customLong("nats-tls-cert"), help: "Client certificate for mutual TLS (env NATS_TLS_CERT).")
    public var tlsCert: String?

    @Option(name: .customLong("nats-tls-key"), help: "Client key for mutual TLS (env NATS_TLS_KEY).")
    public var tlsKey: String?

    @Flag(name: .customLong("nats-tls"), help: "Require TLS to NATS (env NATS_TLS=true).")
    public var tls = false

    public init() {}

    /// The connection settings: flags, then environment, then defaults.
    public func configuration(name: String) throws -> NATSConfiguration {
        let urls = (url ?? Settings.environment(ComponentEnvironment.natsURL) ?? "nats://127.0.0.1:4222")
            .split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
        guard !urls.isEmpty else { throw SettingsError("--nats-url / NATS_URL: no server given") }
        for url in urls where !(url.hasPrefix("nats://") || url.hasPrefix("tls://") || !url.contains("://")) {
            throw SettingsError("--nats-url / NATS_URL: '\(url)' is not a nats:// or tls:// URL")
        }
        let seed = nkeySeed ?? Settings.environment(ComponentEnvironment.natsNKeySeed)
        let publicKey = nkey ?? Settings.environment(ComponentEnvironment.natsNKey)
        if (seed == nil) != (publicKey == nil) {
            throw SettingsError("--nats-nkey / NATS_NKEY and --nats-nkey-seed / NATS_NKEY_SEED go together")
        }
        let cert = tlsCert ?? Settings.environment(ComponentEnvironment.natsTLSCertificate)
        let key = tlsKey ?? Settings.environment(ComponentEnvironment.natsTLSKey)
        if (cert == nil) != (key == nil) {
            throw SettingsError("--nats-tls-cert / NATS_TLS_CERT and --nats-tls-key / NATS_TLS_KEY go together")
        }
        return NATSConfiguration(
            servers: urls, user: user ?? Settings.environment(ComponentEnvironment.natsUser),
            password: try Settings.secret(file: passwordFile, environment: ComponentEnvironment.natsPassword),
            token: try Settings.secret(file: tokenFile, environment: ComponentEnvironment.natsToken),
            credentialsFile: credentials ?? Settings.environment(ComponentEnvironment.natsCredentials), nkeyPublicKey: publicKey, nkeySeedFile: seed,
            tlsCAFile: tlsCA ?? Settings.environment(ComponentEnvironment.natsTLSCA), tlsCertificateFile: cert, tlsKeyFile: key,
            tlsRequired: tls || Settings.environment(ComponentEnvironment.natsTLS) == "true", name: name)
    }
}

/// Stream options shared by the proxy, the updater and the controller.
public struct StreamOptions: ParsableArguments {
    @Option(help: "JetStream stream name (env STREAM_NAME; default fpindex).")
    public var stream: String?

    @Option(help: "Subject prefix; the stream takes <prefix>.> (env SUBJECT_PREFIX; default fpindex).")
    public var subjectPrefix: String?

    @Option(help: "Stream replicas when this process creates the stream (env STREAM_REPLICAS; default 1).")
    public var streamReplicas: Int?

    public init() {}

    public func settings() throws -> StreamSettings {
        let name = stream ?? Settings.environment(ComponentEnvironment.streamName) ?? "fpindex"
        let prefix = subjectPrefix ?? Settings.environment(ComponentEnvironment.subjectPrefix) ?? "fpindex"
        guard FpindexNames.isValidIndexName(name) else {
            throw SettingsError("--stream / STREAM_NAME: '\(name)' must be 1-255 characters of A-Z a-z 0-9 _ -")
        }
        guard StreamSubjects.isValidPrefix(prefix) else {
            throw SettingsError("--subject-prefix / SUBJECT_PREFIX: '\(prefix)' must be dot-separated tokens of A-Z a-z 0-9 _ -")
        }
        let replicasText = streamReplicas.map(String.init) ?? Settings.environment(ComponentEnvironment.streamReplicas) ?? "1"
        guard let replicas = Int(replicasText), (1...5).contains(replicas) else {
            throw SettingsError("--stream-replicas / STREAM_REPLICAS: '\(replicasText)' must be 1-5")
        }
        return StreamSettings(name: name, subjectPrefix: prefix, replicas: replicas)
    }
}
