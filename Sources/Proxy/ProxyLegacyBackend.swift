import AsyncHTTPClient
import FpindexAPI
import LegacyProtocol
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// The legacy line protocol on the proxy: a session's `commit` becomes the `_update` an HTTP
/// client would send (same records, validation and durability: `OK` only once the stream has
/// every message, under the configured consistency), and searches and attribute reads go to
/// the replicas through the read backend, with the session's tuning.
struct ProxyLegacyBackend: LegacyBackend {
    let responder: ProxyResponder
    let index: String
    let logger: Logger

    /// The real fpindex answers at most `max_results` results on its legacy port; through the
    /// replicas' HTTP API a search gives at most this many.
    static let maxResults: UInt32 = SearchRequest.maxLimit

    /// Waits until the proxy is ready (NATS, stream, catalog), then creates the index if it
    /// does not exist, as the real fpindex does before it opens its legacy port, and gives a
    /// replica `--replica-timeout` to apply it.
    func prepare() async throws {
        var reported = false
        // A proxy told to stop before it was ready does not wait for NATS any longer.
        while !Task.isShuttingDownGracefully {
            try Task.checkCancellation()
            if responder.runtime.isReady {
                do {
                    let created = try await responder.createIndex(index, CreateIndexRequest())
                    // The real server opens its port with the index in place: wait (a while) for
                    // a replica to have it, so the first searches find an index.
                    do {
                        try await responder.runtime.progress.wait(
                            for: created.version, replicas: 1, timeout: responder.configuration.replicaTimeout)
                    } catch {
                        logger.warning(
                            "no replica has applied the legacy protocol's index yet; opening the port anyway",
                            metadata: ["index.name": "\(index)"])
                    }
                    return
                } catch {
                    logger.warning("cannot create the legacy protocol's index yet", metadata: ["index.name": "\(index)", "error": "\(error)"])
                }
            } else if !reported {
                logger.info("the legacy port opens once the proxy is ready")
                reported = true
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    func search(_ hashes: [UInt32], tuning: LegacySearchTuning) async -> LegacyReply {
        guard tuning.limit > 0 else { return .ok("") }
        let request = SearchRequest(
            query: hashes, timeout: tuning.timeoutMilliseconds, limit: min(tuning.limit, Self.maxResults), minScore: 1,
            scorePct: tuning.scorePercent)
        do {
            let (reply, body) = try await responder.forwarder.send(
                path: "/\(index)/_search", method: .POST, body: ByteBuffer(bytes: request.encoded(as: .msgpack)), format: .msgpack,
                accept: .msgpack, logger: logger)
            let bytes = Array(buffer: body)
            guard reply.status.code == 200 else {
                let error = try? ErrorResponse.decode(from: bytes, format: .msgpack)
                if error?.error == FpindexError.Name.searchTimeout.rawValue { return .error("timeout exceeded") }
                logger.warning("legacy search failed", metadata: ["status": "\(reply.status.code)", "error": "\(error?.error ?? "?")"])
                return .error("search failed")
            }
            return .results(try SearchResponse.decode(from: bytes, format: .msgpack).results.map { ($0.id, $0.score) })
        } catch {
            logger.warning("legacy search failed", metadata: ["error": "\(error)"])
            return .error("search failed")
        }
    }

    func attribute(_ name: String) async -> String {
        // The keys fpindex-cluster keeps in every replica are not the client's attributes.
        guard !ReservedMetadata.isReserved(name) else { return "" }
        do {
            let (reply, body) = try await responder.forwarder.send(
                path: "/\(index)", method: .GET, body: nil, format: nil, accept: .msgpack, logger: logger)
            guard reply.status.code == 200 else { return "" }
            return try IndexInfo.decode(from: Array(buffer: body), format: .msgpack).metadata[name] ?? ""
        } catch {
            logger.warning("legacy attribute read failed", metadata: ["error": "\(error)"])
            return ""
        }
    }

    func commit(_ transaction: LegacyTransaction) async -> Bool {
        guard let update = transaction.updateRequest() else { return false }
        do {
            try StreamWriter.validate(update)
            try responder.requireIndex(index)
            let version = try await responder.publishUpdate(update, index: index)
            try await responder.awaitReplicas(
                version, responder.configuration.consistency, timeout: responder.configuration.legacy?.commitTimeout)
            return true
        } catch {
            logger.warning(
                "legacy commit failed", metadata: ["index.name": "\(index)", "inserts": "\(transaction.inserts.count)", "error": "\(error)"])
            return false
        }
    }
}
