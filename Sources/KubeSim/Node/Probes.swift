import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A container's readiness, liveness or startup probe, parsed.
struct ProbeSpec: Sendable, Equatable {
    enum Action: Sendable, Equatable {
        case http(path: String, port: Int, https: Bool, headers: [String: String])
        case tcp(port: Int)
        case exec([String])
        case unsupported(String)
    }
    var action: Action
    var initialDelay: Duration
    var period: Duration
    var timeout: Duration
    var successThreshold: Int
    var failureThreshold: Int

    var timeoutAmount: TimeAmount {
        .nanoseconds(timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
    }

    /// The probe as the kubelet reads it (its defaults: period 10 s, timeout 1 s, thresholds 1 and 3).
    init(_ probe: JSONValue, container: JSONValue) {
        func seconds(_ key: String, _ fallback: Int64, minimum: Int64) -> Duration {
            .seconds(max(minimum, probe[key]?.intValue ?? fallback))
        }
        initialDelay = seconds("initialDelaySeconds", 0, minimum: 0)
        period = seconds("periodSeconds", 10, minimum: 1)
        timeout = seconds("timeoutSeconds", 1, minimum: 1)
        successThreshold = Int(max(1, probe["successThreshold"]?.intValue ?? 1))
        failureThreshold = Int(max(1, probe["failureThreshold"]?.intValue ?? 3))
        func port(_ value: JSONValue?) -> Int? {
            if let number = value?.intValue { return Int(number) }
            if let text = value?.stringValue {
                if let number = Int(text) { return number }
                for declared in container["ports"]?.arrayValue ?? [] where declared["name"]?.stringValue == text {
                    return declared["containerPort"]?.intValue.map { Int($0) }
                }
            }
            return nil
        }
        if let http = probe["httpGet"] {
            guard let number = port(http["port"]) else {
                action = .unsupported("httpGet port \(http["port"].map(Schema.describe) ?? "") is not a container port")
                return
            }
            var headers: [String: String] = [:]
            for header in http["httpHeaders"]?.arrayValue ?? [] {
                if let name = header["name"]?.stringValue { headers[name] = header["value"]?.stringValue ?? "" }
            }
            let path = http["path"]?.stringValue ?? "/"
            action = .http(
                path: path.hasPrefix("/") ? path : "/" + path, port: number, https: http["scheme"]?.stringValue == "HTTPS",
                headers: headers)
        } else if let tcp = probe["tcpSocket"] {
            guard let number = port(tcp["port"]) else {
                action = .unsupported("tcpSocket port is not a container port")
                return
            }
            action = .tcp(port: number)
        } else if let command = probe.value(at: ["exec", "command"])?.arrayValue {
            action = .exec(command.compactMap(\.stringValue))
        } else {
            action = .unsupported("only httpGet, tcpSocket and exec probes are supported")
        }
    }
}

/// Runs probes from the host (which reaches every pod address over the bridge); exec probes
/// run inside the container's namespaces through nsenter.
struct Prober: Sendable {
    let client: HTTPClient
    let tools: NodeTools

    /// HTTPS probes, as the kubelet sends them: without verifying the pod's certificate (a
    /// self-signed one is fine). Lives as long as the process, like `HTTPClient.shared`.
    static let unverifiedHTTPS: HTTPClient = {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: .init(tlsConfiguration: tls))
    }()

    /// One attempt: nil on success, else why it failed (the kubelet's event message).
    func check(_ spec: ProbeSpec, podIP: String, pid: Int32) async -> String? {
        switch spec.action {
        case .http(let path, let port, let https, let headers):
            var request = HTTPClientRequest(url: "\(https ? "https" : "http")://\(podIP):\(port)\(path)")
            request.headers.add(name: "User-Agent", value: "kube-probe/1.32")
            request.headers.add(name: "Connection", value: "close")
            for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
            do {
                let response = try await (https ? Self.unverifiedHTTPS : client).execute(request, timeout: spec.timeoutAmount)
                let body = try? await response.body.collect(upTo: 10_240)
                if (200..<400).contains(Int(response.status.code)) { return nil }
                let text = body.map { String(buffer: $0) } ?? ""
                return "HTTP probe failed with statuscode: \(response.status.code)" + (text.isEmpty ? "" : ": \(text.prefix(200))")
            } catch {
                return "Get \"\(https ? "https" : "http")://\(podIP):\(port)\(path)\": \(error)"
            }
        case .tcp(let port):
            do {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connectTimeout(spec.timeoutAmount)
                    .connect(host: podIP, port: port).get()
                try? await channel.close()
                return nil
            } catch {
                return "dial tcp \(podIP):\(port): \(error)"
            }
        case .exec(let command):
            guard !command.isEmpty else { return "exec probe without a command" }
            do {
                let (status, output) = try await HostCommand.status(
                    tools.nsenter, ["-t", String(pid), "-m", "-n", "--"] + command, timeout: spec.timeout)
                return status == 0 ? nil : "command \(command) exited with \(status): \(output.prefix(200))"
            } catch {
                return "exec \(command): \(error)"
            }
        case .unsupported(let why):
            return why
        }
    }
}
