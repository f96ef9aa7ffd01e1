import CCurl
import Foundation
import TestSupport
import Testing

/// libcurl through the typed setopt/getinfo wrappers, fetching from a local HTTP server (fpindex-dev).
@Suite("libcurl", .timeLimit(.minutes(2)))
struct CCurlTests {
    final class Sink {
        var bytes: [UInt8] = []
    }

    @Test func fetchesFromALocalServer() async throws {
        let server = try ChildProcess(
            name: "fpindex-dev", executable: try Locations.executable("fpindex-dev"), arguments: ["--port", "0"])
        do {
            try await check(server)
        } catch {
            print(server.output)
            await server.stop()
            throw error
        }
        await server.stop()
    }

    func check(_ server: ChildProcess) async throws {
        let line = try await server.waitForLine(containing: "listening on ")
        let base = String(line.split(separator: " ").last!)

        let (status, body, contentType) = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try Self.fetch(base + "/_health") })
            }
        }
        #expect(status == 200)
        #expect(body == "OK\n")
        #expect(contentType?.hasPrefix("text/plain") == true)

        let missing = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try Self.fetch(base + "/nope") }) }
        }
        #expect(missing.0 == 404)
        #expect(missing.1 == #"{"error":"IndexNotFound"}"#)
    }

    static func fetch(_ url: String) throws -> (Int, String, String?) {
        guard let handle = curl_easy_init() else { throw TestFailure("curl_easy_init failed") }
        defer { curl_easy_cleanup(handle) }
        let sink = Sink()
        let write: CCurl_write_callback = { data, size, count, userdata in
            let sink = Unmanaged<Sink>.fromOpaque(userdata!).takeUnretainedValue()
            let length = size * count
            data!.withMemoryRebound(to: UInt8.self, capacity: length) {
                sink.bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: length))
            }
            return length
        }
        guard CCurl_easy_setopt_string(handle, CURLOPT_URL, url) == CURLE_OK,
            CCurl_easy_setopt_long(handle, CURLOPT_NOSIGNAL, 1) == CURLE_OK,
            CCurl_easy_setopt_long(handle, CURLOPT_TIMEOUT_MS, 10_000) == CURLE_OK,
            CCurl_easy_setopt_write_callback(handle, CURLOPT_WRITEFUNCTION, write) == CURLE_OK,
            CCurl_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, Unmanaged.passUnretained(sink).toOpaque()) == CURLE_OK
        else { throw TestFailure("curl_easy_setopt failed") }
        let code = curl_easy_perform(handle)
        guard code == CURLE_OK else { throw TestFailure("curl: \(String(cString: curl_easy_strerror(code)))") }
        var status = 0
        _ = CCurl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        var contentType: UnsafeMutablePointer<CChar>?
        _ = CCurl_easy_getinfo_string(handle, CURLINFO_CONTENT_TYPE, &contentType)
        return (status, String(decoding: sink.bytes, as: UTF8.self), contentType.map { String(cString: $0) })
    }
}
