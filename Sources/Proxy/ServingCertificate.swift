import Foundation
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// Where the proxy's listener gets its TLS certificate (`--tls-cert`, `--tls-key`: PEM files,
/// the chain leaf first).
public struct ProxyTLSSettings: Sendable, Equatable {
    public var certificateFile: String
    public var keyFile: String
    /// How often the files are checked for a renewed certificate.
    public var reloadInterval: Duration

    public init(certificateFile: String, keyFile: String, reloadInterval: Duration = .seconds(2)) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.reloadInterval = reloadInterval
    }
}

/// The listener's certificate and key, reloaded when their files change: every handshake
/// takes the pair in force, so a renewed certificate (cert-manager rewriting its Secret) is
/// served without a restart. A pair that does not load (half-written, key and certificate
/// not matching) keeps the previous one.
public final class ServingCertificate: Sendable {
    private struct Pair: @unchecked Sendable {
        // NIOSSL's certificate and key are immutable once loaded.
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    private let current: Mutex<Pair>
    let settings: ProxyTLSSettings

    /// - Throws: `SettingsError`-style messages naming the file that does not load.
    public init(_ settings: ProxyTLSSettings) throws {
        self.settings = settings
        let certificate = FileManager.default.contents(atPath: settings.certificateFile)
        let key = FileManager.default.contents(atPath: settings.keyFile)
        current = Mutex(try Self.load(certificate: certificate, key: key, settings: settings))
    }

    struct LoadError: Error, CustomStringConvertible {
        var description: String
    }

    private static func load(certificate: Data?, key: Data?, settings: ProxyTLSSettings) throws -> Pair {
        guard let certificate else { throw LoadError(description: "cannot read the TLS certificate \(settings.certificateFile)") }
        guard let key else { throw LoadError(description: "cannot read the TLS key \(settings.keyFile)") }
        let pair: Pair
        do {
            let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificate))
            guard !chain.isEmpty else { throw LoadError(description: "no certificate in \(settings.certificateFile)") }
            pair = Pair(chain: chain, key: try NIOSSLPrivateKey(bytes: Array(key), format: .pem))
        } catch let error as LoadError {
            throw error
        } catch {
            throw LoadError(description: "\(settings.certificateFile) / \(settings.keyFile) are not a PEM certificate and key: \(error)")
        }
        // A context refuses a key that does not belong to the certificate.
        do {
            _ = try NIOSSLContext(configuration: Self.configuration(pair))
        } catch {
            throw LoadError(description: "the TLS key \(settings.keyFile) does not match the certificate \(settings.certificateFile): \(error)")
        }
        return pair
    }

    private static func configuration(_ pair: Pair) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: pair.chain.map { .certificate($0) }, privateKey: .privateKey(pair.key))
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }

    /// The listener's configuration: the pair in force at each handshake.
    public var tlsConfiguration: TLSConfiguration {
        var configuration = Self.configuration(current.withLock { $0 })
        configuration.sslContextCallback = { [self] _, promise in
            let pair = current.withLock { $0 }
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = pair.chain.map { .certificate($0) }
            override.privateKey = .privateKey(pair.key)
            promise.succeed(override)
        }
        return configuration
    }

    /// Takes the files' new contents (certificate, key).
    func reload(_ contents: [Data?], logger: Logger) {
        do {
            let pair = try Self.load(certificate: contents[0], key: contents[1], settings: settings)
            current.withLock { $0 = pair }
            logger.info("TLS certificate reloaded", metadata: ["file": "\(settings.certificateFile)"])
        } catch {
            logger.warning("the new TLS certificate does not load; the one in force stays", metadata: ["error": "\(error)"])
        }
    }
}
