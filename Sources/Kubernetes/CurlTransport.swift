import CCurl
import Foundation
import Logging
import Synchronization

/// One HTTP request for the transport.
struct TransportRequest: Sendable {
    var method: String
    var url: String
    var headers: [(String, String)]
    var body: [UInt8]?
    /// Bounds the whole transfer.
    var timeout: Duration
}

/// A complete HTTP answer. Header names are lower-cased.
struct TransportResponse: Sendable {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
}

/// libcurl's multi interface driven by one thread this object owns, so no request ever blocks
/// Swift's cooperative pool. Requests are handed over through a locked queue and
/// `curl_multi_wakeup`; completions resume continuations (or feed a stream) from that thread.
/// The multi handle keeps a connection cache, so connections are reused, and HTTP/2 is
/// negotiated over TLS (streams then share one connection).
final class CurlTransport: Sendable {
    private let loop: CurlLoop
    private let tls: TLSOptions

    /// TLS settings applied to every transfer.
    struct TLSOptions: Sendable {
        var caFile: String?
        var caData: [UInt8]?
        var certFile: String?
        var certData: [UInt8]?
        var keyFile: String?
        var keyData: [UInt8]?
        var insecure: Bool
    }

    init(tls: TLSOptions, logger: Logger) throws {
        self.tls = tls
        loop = try CurlLoop(logger: logger)
        let loop = self.loop
        let thread = Thread { loop.run() }
        thread.name = "kubernetes-curl"
        thread.start()
    }

    deinit { loop.stop() }

    /// Stops the transfer thread; transfers in flight fail.
    func shutdown() { loop.stop() }

    /// Performs a request and returns the whole answer (any status).
    func perform(_ request: TransportRequest) async throws -> TransportResponse {
        let transfer = try CurlTransfer(request: request, tls: tls, streaming: nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                transfer.setContinuation(continuation)
                loop.submit(transfer)
            }
        } onCancel: {
            loop.cancel(transfer)
        }
    }

    /// Starts a streaming request (a watch). A 2xx answer's body arrives as chunks in arbitrary
    /// pieces; any other status ends the stream with the decoded `KubernetesError`. Ending the
    /// iteration cancels the transfer.
    func stream(_ request: TransportRequest) throws -> AsyncThrowingStream<[UInt8], any Error> {
        let (stream, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        let transfer = try CurlTransfer(request: request, tls: tls, streaming: continuation)
        let loop = self.loop
        continuation.onTermination = { _ in loop.cancel(transfer) }
        loop.submit(transfer)
        return stream
    }
}

/// The thread side: owns the multi handle; everything but `submit`, `cancel` and `stop` runs
/// on the loop thread.
final class CurlLoop: @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    private let logger: Logger
    private struct Inbox {
        var added: [CurlTransfer] = []
        var cancelled: [CurlTransfer] = []
        var stopping = false
        var stopped = false
    }
    private let inbox = Mutex(Inbox())
    /// Transfers in the multi handle, by easy handle. Loop thread only.
    private var active: [UnsafeMutableRawPointer: CurlTransfer] = [:]

    init(logger: Logger) throws {
        guard let multi = curl_multi_init() else {
            throw KubernetesError(reason: .transport, code: 0, message: "curl_multi_init failed")
        }
        self.multi = multi
        self.logger = logger
        _ = CCurl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16)
    }

    func submit(_ transfer: CurlTransfer) {
        let accepted = inbox.withLock { inbox -> Bool in
            guard !inbox.stopping else { return false }
            inbox.added.append(transfer)
            return true
        }
        if accepted {
            curl_multi_wakeup(multi)
        } else {
            transfer.fail(KubernetesError(reason: .transport, code: 0, message: "the Kubernetes client is shut down"))
        }
    }

    func cancel(_ transfer: CurlTransfer) {
        // Fail at once (the waiter must not wait for the loop), then let the loop drop the handle.
        transfer.fail(CancellationError())
        inbox.withLock { $0.cancelled.append(transfer) }
        curl_multi_wakeup(multi)
    }

    func stop() {
        let wake = inbox.withLock { inbox -> Bool in
            defer { inbox.stopping = true }
            return !inbox.stopping
        }
        if wake { curl_multi_wakeup(multi) }
    }

    func run() {
        while true {
            let (added, cancelled, stopping) = inbox.withLock { inbox in
                defer {
                    inbox.added = []
                    inbox.cancelled = []
                }
                return (inbox.added, inbox.cancelled, inbox.stopping)
            }
            for transfer in added {
                active[transfer.easy] = transfer
                curl_multi_add_handle(multi, transfer.easy)
            }
            for transfer in cancelled where active.removeValue(forKey: transfer.easy) != nil {
                curl_multi_remove_handle(multi, transfer.easy)
            }
            if stopping {
                for transfer in active.values {
                    curl_multi_remove_handle(multi, transfer.easy)
                    transfer.fail(KubernetesError(reason: .transport, code: 0, message: "the Kubernetes client is shut down"))
                }
                active = [:]
                break
            }
            var running: Int32 = 0
            curl_multi_perform(multi, &running)
            var left: Int32 = 0
            while let message = curl_multi_info_read(multi, &left) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
                let result = message.pointee.data.result
                curl_multi_remove_handle(multi, easy)
                if let transfer = active.removeValue(forKey: easy) {
                    transfer.complete(result)
                }
            }
            var ready: Int32 = 0
            curl_multi_poll(multi, nil, 0, 1000, &ready)
        }
        // Transfers submitted after the last drain fail too.
        let late = inbox.withLock { inbox in
            defer {
                inbox.added = []
                inbox.stopped = true
            }
            return inbox.added
        }
        for transfer in late {
            transfer.fail(KubernetesError(reason: .transport, code: 0, message: "the Kubernetes client is shut down"))
        }
        curl_multi_cleanup(multi)
    }
}

/// One easy handle with its request buffers and the state of its answer. Callbacks run on the
/// loop thread; completion happens exactly once.
final class CurlTransfer: @unchecked Sendable {
    let easy: UnsafeMutableRawPointer
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var requestBody: UnsafeMutableRawBufferPointer?
    private var errorBuffer: UnsafeMutablePointer<CChar>
    private let streaming: AsyncThrowingStream<[UInt8], any Error>.Continuation?
    /// Completion happens once, from the loop thread or from a cancelling task, possibly before
    /// the waiting continuation is installed.
    private struct Completion {
        var continuation: CheckedContinuation<TransportResponse, any Error>?
        var result: Result<TransportResponse, any Error>?
        var finished = false
    }
    private let completion = Mutex(Completion())
    private var status = 0
    private var headers: [String: String] = [:]
    private var body: [UInt8] = []
    private let url: String

    init(request: TransportRequest, tls: CurlTransport.TLSOptions, streaming: AsyncThrowingStream<[UInt8], any Error>.Continuation?)
        throws
    {
        guard let easy = curl_easy_init() else {
            throw KubernetesError(reason: .transport, code: 0, message: "curl_easy_init failed")
        }
        self.easy = easy
        self.streaming = streaming
        self.url = request.url
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        try configure(request, tls: tls)
    }

    deinit {
        curl_easy_cleanup(easy)
        if let headerList { curl_slist_free_all(headerList) }
        requestBody?.deallocate()
        errorBuffer.deallocate()
    }

    func setContinuation(_ continuation: CheckedContinuation<TransportResponse, any Error>) {
        let early = completion.withLock { state -> Result<TransportResponse, any Error>? in
            if let result = state.result {
                state.result = nil
                return result
            }
            state.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    private func configure(_ request: TransportRequest, tls: CurlTransport.TLSOptions) throws {
        var failed: CURLcode = CURLE_OK
        func set(_ code: CURLcode) { if code != CURLE_OK && failed == CURLE_OK { failed = code } }
        set(CCurl_easy_setopt_string(easy, CURLOPT_URL, request.url))
        set(CCurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1))
        set(CCurl_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, errorBuffer))
        set(CCurl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS)))
        set(CCurl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, 10_000))
        let (seconds, attoseconds) = request.timeout.components
        // At least 1 ms: 0 would mean "no timeout" to libcurl.
        set(CCurl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))))
        set(CCurl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1))
        set(CCurl_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1))
        set(CCurl_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0))

        // TLS: verification stays on unless the kubeconfig explicitly turned it off.
        if tls.insecure {
            set(CCurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 0))
            set(CCurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 0))
        } else {
            set(CCurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 1))
            set(CCurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 2))
        }
        if let file = tls.caFile { set(CCurl_easy_setopt_string(easy, CURLOPT_CAINFO, file)) }
        if let data = tls.caData {
            set(data.withUnsafeBytes { CCurl_easy_setopt_blob(easy, CURLOPT_CAINFO_BLOB, $0.baseAddress, $0.count) })
        }
        if let file = tls.certFile { set(CCurl_easy_setopt_string(easy, CURLOPT_SSLCERT, file)) }
        if let data = tls.certData {
            set(data.withUnsafeBytes { CCurl_easy_setopt_blob(easy, CURLOPT_SSLCERT_BLOB, $0.baseAddress, $0.count) })
        }
        if let file = tls.keyFile { set(CCurl_easy_setopt_string(easy, CURLOPT_SSLKEY, file)) }
        if let data = tls.keyData {
            set(data.withUnsafeBytes { CCurl_easy_setopt_blob(easy, CURLOPT_SSLKEY_BLOB, $0.baseAddress, $0.count) })
        }

        // Method and body.
        switch request.method {
        case "GET": set(CCurl_easy_setopt_long(easy, CURLOPT_HTTPGET, 1))
        default: set(CCurl_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method))
        }
        if let body = request.body {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(body.count, 1), alignment: 1)
            body.withUnsafeBytes { buffer.copyMemory(from: $0) }
            requestBody = buffer
            set(CCurl_easy_setopt_off_t(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
            set(CCurl_easy_setopt_pointer(easy, CURLOPT_POSTFIELDS, buffer.baseAddress))
        }
        // "Expect:" stops curl from waiting for 100-continue on larger bodies.
        for line in request.headers.map({ "\($0.0): \($0.1)" }) + ["Expect:"] {
            headerList = curl_slist_append(headerList, line)
        }
        set(CCurl_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, headerList))

        // Callbacks get this transfer back through their userdata; the loop keeps it alive.
        let me = Unmanaged.passUnretained(self).toOpaque()
        let onHeader: CCurl_write_callback = { data, size, count, userdata in
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(userdata!).takeUnretainedValue()
            let length = size * count
            transfer.header(UnsafeRawBufferPointer(start: data, count: length))
            return length
        }
        let onBody: CCurl_write_callback = { data, size, count, userdata in
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(userdata!).takeUnretainedValue()
            let length = size * count
            return transfer.receive(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
        }
        set(CCurl_easy_setopt_write_callback(easy, CURLOPT_HEADERFUNCTION, onHeader))
        set(CCurl_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, me))
        set(CCurl_easy_setopt_write_callback(easy, CURLOPT_WRITEFUNCTION, onBody))
        set(CCurl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, me))
        if failed != CURLE_OK {
            throw KubernetesError(
                reason: .transport, code: 0,
                message: "cannot configure the request: \(String(cString: curl_easy_strerror(failed)))")
        }
    }

    private func header(_ bytes: UnsafeRawBufferPointer) {
        let line = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("HTTP/") {
            // A new response (after a 100 Continue or a redirect): start over.
            headers = [:]
            let parts = line.split(separator: " ")
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        } else if let colon = line.firstIndex(of: ":") {
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = value
        }
    }

    /// Body bytes: streamed on for a 2xx streaming request, buffered otherwise.
    private func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if let streaming, (200..<300).contains(status) {
            if case .terminated = streaming.yield(Array(bytes)) { return false }
            return true
        }
        body.append(contentsOf: bytes)
        return body.count <= 64 << 20
    }

    private func markFinished() -> Bool {
        completion.withLock { state in
            defer { state.finished = true }
            return !state.finished
        }
    }

    /// Called by the loop when curl is done with the transfer.
    func complete(_ result: CURLcode) {
        guard markFinished() else { return }
        if result != CURLE_OK {
            let detail = String(cString: errorBuffer)
            let text = detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail
            let reason: KubernetesError.Reason = result == CURLE_OPERATION_TIMEDOUT ? .timeout : .transport
            let error = KubernetesError(reason: reason, code: 0, message: "\(text) (\(redactedURL))")
            finish(.failure(error))
            return
        }
        finish(.success(TransportResponse(status: status, headers: headers, body: body)))
    }

    func fail(_ error: any Error) {
        guard markFinished() else { return }
        finish(.failure(error))
    }

    private func finish(_ result: Result<TransportResponse, any Error>) {
        if let streaming {
            switch result {
            case .success(let response) where (200..<300).contains(response.status):
                streaming.finish()
            case .success(let response):
                streaming.finish(
                    throwing: KubernetesError.from(
                        code: response.status, body: response.body, retryAfterHeader: response.headers["retry-after"]))
            case .failure(let error):
                streaming.finish(throwing: error)
            }
        } else {
            let waiting = completion.withLock { state in
                let waiting = state.continuation
                state.continuation = nil
                if waiting == nil { state.result = result }
                return waiting
            }
            waiting?.resume(with: result)
        }
    }

    /// The URL without its query (selectors may be long; nothing secret is in URLs, but keep logs short).
    private var redactedURL: String {
        url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
    }
}
