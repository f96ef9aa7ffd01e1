import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

#if canImport(Glibc)
    import Glibc
#endif

/// A certificate authority generated in-process and a serving certificate it signed for the
/// given names and addresses (by default `localhost`, `127.0.0.1` and `::1`; P-256 keys, valid
/// for a year).
public struct KubeSimCertificates: Sendable {
    /// The CA certificate (what a kubeconfig's `certificate-authority-data` holds).
    public let caCertificatePEM: String
    /// The serving certificate and its private key.
    public let serverCertificatePEM: String
    public let serverPrivateKeyPEM: String

    /// Generates a fresh CA and serving certificate.
    public static func generate(hosts: [String] = ["localhost"], addresses: [String] = ["127.0.0.1", "::1"]) throws
        -> KubeSimCertificates
    {
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
        var alternativeNames: [GeneralName] = hosts.map { .dnsName($0) }
        for address in addresses {
            var bytes: [UInt8]?
            if address.contains(":") {
                var v6 = in6_addr()
                if inet_pton(AF_INET6, address, &v6) == 1 { bytes = withUnsafeBytes(of: &v6) { Array($0) } }
            } else {
                var v4 = in_addr()
                if inet_pton(AF_INET, address, &v4) == 1 { bytes = withUnsafeBytes(of: &v4) { Array($0) } }
            }
            if let bytes { alternativeNames.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes)))) }
        }
        let subjectAltName = SubjectAlternativeNames(alternativeNames)
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
