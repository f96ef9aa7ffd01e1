import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// A certificate authority generated in-process and a serving certificate it signed for
/// `127.0.0.1`, `::1` and `localhost` (P-256 keys, valid for a year).
public struct KubeSimCertificates: Sendable {
    /// The CA certificate (what a kubeconfig's `certificate-authority-data` holds).
    public let caCertificatePEM: String
    /// The serving certificate and its private key.
    public let serverCertificatePEM: String
    public let serverPrivateKeyPEM: String

    /// Generates a fresh CA and serving certificate.
    public static func generate(hosts: [String] = ["localhost"]) throws -> KubeSimCertificates {
        let now = Date()
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName {
            OrganizationName("kubesim")
            CommonName("kubesim-ca")
        }
        let ca = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(caKey.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 365 * 86400, issuer: caName, subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(caKey.publicKey))
            }, issuerPrivateKey: .init(caKey))
        let serverKey = P256.Signing.PrivateKey()
        // subjectAltName, DER by hand: SEQUENCE { [7] 127.0.0.1, [7] ::1, [2] host... }.
        var names: [UInt8] = [0x87, 4, 127, 0, 0, 1, 0x87, 16] + [UInt8](repeating: 0, count: 15) + [1]
        for host in hosts { names += [0x82, UInt8(host.utf8.count)] + Array(host.utf8) }
        let subjectAltName = Certificate.Extension(
            oid: .X509ExtensionID.subjectAlternativeName, critical: false, value: ArraySlice([0x30, UInt8(names.count)] + names))
        let serverName = try DistinguishedName { CommonName("kubesim") }
        let server = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(serverKey.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 365 * 86400, issuer: caName, subject: serverName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage([.serverAuth])
                subjectAltName
            }, issuerPrivateKey: .init(caKey))
        return KubeSimCertificates(
            caCertificatePEM: try ca.serializeAsPEM().pemString,
            serverCertificatePEM: try server.serializeAsPEM().pemString,
            serverPrivateKeyPEM: serverKey.pemRepresentation)
    }

    /// A NIOSSL server configuration serving the certificate.
    func serverConfiguration() throws -> TLSConfiguration {
        let certificate = try NIOSSLCertificate(bytes: Array(serverCertificatePEM.utf8), format: .pem)
        let key = try NIOSSLPrivateKey(bytes: Array(serverPrivateKeyPEM.utf8), format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(certificate)], privateKey: .privateKey(key))
        configuration.applicationProtocols = ["http/1.1"]
        return configuration
    }
}
