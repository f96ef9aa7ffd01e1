import Foundation
import Kubernetes
import Synchronization
import TestSupport
import Testing

/// Plays the kubelet (and the Deployment controller) for a cluster's pods: runs fpindex-dev and
/// fpindex-updater for each index pod with the environment the StatefulSet gives its updater,
/// an fpindex-proxy with the proxy Deployment's, creates the Pod objects and keeps their Ready
/// condition equal to the updater's readiness probe.
///
/// It reads the controller's objects as plain JSON by the field names of the Kubernetes API,
/// not through the controller's Codable models: a field the models misname would otherwise be
/// written and read back under the same wrong name, and pass.
final class Kubelet: Sendable {
    struct PodProcesses: Sendable {
        let dev: ChildProcess
        let updater: ChildProcess
        let probeURL: String
        /// The updater's readiness probe path, as the pod template gives it.
        let readinessPath: String
        let devURL: String
    }

    let harness: ControllerHarness
    let pods = Mutex<[String: PodProcesses]>([:])
    let proxy = Mutex<(process: ChildProcess, url: String)?>(nil)

    init(harness: ControllerHarness) { self.harness = harness }

    /// The container's environment as Kubernetes would give it to pod `podName`.
    static func environment(_ container: JSONValue, podName: String) -> [String: String] {
        var env: [String: String] = [:]
        for variable in container["env"]?.array ?? [] {
            guard let name = variable["name"]?.string else { continue }
            if let value = variable["value"]?.string {
                env[name] = value
            } else if variable[path: ["valueFrom", "fieldRef", "fieldPath"]]?.string == "metadata.name" {
                env[name] = podName
            }
        }
        return env
    }

    /// The pod template of a workload, as the API server stores it.
    func template(_ type: ResourceType, name: String) async throws -> JSONValue {
        let object = try await harness.client.get(type, namespace: "fp", name: name, as: JSONValue.self)
        return try #require(object[path: ["spec", "template"]], "\(name) has no spec.template")
    }

    static func container(_ template: JSONValue, named name: String) throws -> JSONValue {
        let containers = template[path: ["spec", "containers"]]?.array ?? []
        return try #require(containers.first { $0["name"]?.string == name }, "no container \(name) in \(template)")
    }

    /// Starts the processes of index pod `ordinal` and creates its Pod object (not ready).
    func startIndexPod(_ ordinal: Int, cluster: String = "main") async throws {
        let setName = "\(cluster)-index"
        let set = try await harness.client.get(ResourceType.statefulSets, namespace: "fp", name: setName, as: JSONValue.self)
        let podName = "\(setName)-\(ordinal)"
        let template = try await self.template(.statefulSets, name: setName)
        let updaterContainer = try Self.container(template, named: "updater")
        let readinessPath = try #require(updaterContainer[path: ["readinessProbe", "httpGet", "path"]]?.string)
        let devPort = try FreePort.find()
        let dev = try ChildProcess(
            name: "\(podName)-fpindex", executable: try Locations.executable("fpindex-dev"),
            arguments: ["--host", "127.0.0.1", "--port", String(devPort)])
        _ = try await dev.waitForLine(containing: "listening on ")
        var env = Self.environment(updaterContainer, podName: podName)
        #expect(env["CONSUMER_NAME"] == podName)
        env["FPINDEX_URL"] = "http://127.0.0.1:\(devPort)"  // localhost in the pod: the same here
        env["LISTEN_ADDR"] = "127.0.0.1:0"
        // The pod has its own address; on this host the port is picked free.
        if env["LEGACY_LISTEN_ADDR"] != nil { env["LEGACY_LISTEN_ADDR"] = "127.0.0.1:0" }
        let updater = try ChildProcess(
            name: "\(podName)-updater", executable: try Locations.executable("fpindex-updater"),
            arguments: ["--batch-wait", "100", "--idle-check", "300"], environment: env)
        let probeURL = String(try await updater.waitForLine(containing: "listening on ").split(separator: " ").last!)
        pods.withLock {
            $0[podName] = PodProcesses(
                dev: dev, updater: updater, probeURL: probeURL, readinessPath: readinessPath, devURL: "http://127.0.0.1:\(devPort)")
        }

        let pod: JSONValue = [
            "apiVersion": "v1", "kind": "Pod",
            "metadata": [
                "name": .string(podName), "namespace": "fp", "labels": template[path: ["metadata", "labels"]] ?? [:],
                "ownerReferences": [
                    [
                        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": .string(setName),
                        "uid": set[path: ["metadata", "uid"]] ?? "", "controller": true, "blockOwnerDeletion": true,
                    ]
                ],
            ],
            "spec": template["spec"] ?? [:],
        ]
        _ = try await harness.client.create(ResourceType.pods, namespace: "fp", body: pod, as: JSONValue.self)
        try await setReady(podName, false)
    }

    /// Stops a pod's processes and deletes its Pod object (a scale-down).
    func stopIndexPod(_ podName: String) async throws {
        if let processes = pods.withLock({ $0.removeValue(forKey: podName) }) {
            await processes.updater.stop()
            await processes.dev.stop()
        }
        try await harness.client.delete(Pod.self, namespace: "fp", name: podName)
    }

    /// Starts the proxy with the Deployment's environment; marks the Deployment available
    /// once the proxy is ready.
    func startProxy(cluster: String = "main") async throws -> String {
        let container = try Self.container(try await template(.deployments, name: "\(cluster)-proxy"), named: "proxy")
        let readinessPath = try #require(container[path: ["readinessProbe", "httpGet", "path"]]?.string)
        var env = Self.environment(container, podName: "\(cluster)-proxy-0")
        env["LISTEN_ADDR"] = "127.0.0.1:0"
        // The pod has its own address; on this host the port is picked free.
        if env["LEGACY_LISTEN_ADDR"] != nil { env["LEGACY_LISTEN_ADDR"] = "127.0.0.1:0" }
        if let first = pods.withLock({ $0.values.first }) { env["FPINDEX_URL"] = first.devURL }
        let process = try ChildProcess(
            name: "\(cluster)-proxy", executable: try Locations.executable("fpindex-proxy"),
            arguments: (container["args"]?.array ?? []).compactMap(\.string), environment: env)
        let url = String(try await process.waitForLine(containing: "listening on ").split(separator: " ").last!)
        proxy.withLock { $0 = (process, url) }
        try await eventually("the proxy is ready") {
            try await TestHTTPClient(baseURL: url).request(.GET, readinessPath).status == 200 ? true : nil
        }
        _ = try await harness.client.patch(
            Deployment.self, namespace: "fp", name: "\(cluster)-proxy",
            patch: .merge(["status": ["replicas": 1, "readyReplicas": 1, "availableReplicas": 1]]),
            subresource: "status")
        return url
    }

    func setReady(_ podName: String, _ ready: Bool) async throws {
        let now = KubernetesTime.format(Date())
        let status: Kubernetes.JSONValue = [
            "phase": "Running",
            "conditions": [
                ["type": "Ready", "status": .string(ready ? "True" : "False"), "lastTransitionTime": .string(now)]
            ],
        ]
        _ = try await harness.client.patch(
            Pod.self, namespace: "fp", name: podName, patch: .merge(["status": status]), subresource: "status")
    }

    /// Mirrors every pod's updater readiness into its Ready condition, until cancelled.
    func syncReadiness() async {
        var last: [String: Bool] = [:]
        while !Task.isCancelled {
            for (name, processes) in pods.withLock({ $0 }) {
                let ready = (try? await TestHTTPClient(baseURL: processes.probeURL).request(.GET, processes.readinessPath).status) == 200
                if last[name] != ready, (try? await setReady(name, ready)) != nil { last[name] = ready }
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    func stop() async {
        for processes in pods.withLock({ Array($0.values) }) {
            await processes.updater.stop()
            await processes.dev.stop()
        }
        if let proxy = proxy.withLock({ $0 }) { await proxy.process.stop() }
    }

    var output: String {
        var text = pods.withLock { $0.values.map { $0.updater.output }.joined(separator: "\n") }
        if let proxy = proxy.withLock({ $0 }) { text += "\n" + proxy.process.output }
        return text
    }
}

/// Writes `count` fingerprints to `index` through the proxy in `_update` batches.
func writeFingerprints(proxyURL: String, index: String, count: Int, startID: Int = 1) async throws {
    let http = TestHTTPClient(baseURL: proxyURL)
    _ = try await http.json(.PUT, "/\(index)")
    var id = startID
    while id < startID + count {
        let end = min(id + 500, startID + count)
        let changes = (id..<end).map { id in
            #"{"insert":{"id":\#(id),"hashes":[\#(id * 7),\#(id * 7 + 1),\#(id * 7 + 2)]}}"#
        }
        let reply = try await http.json(.POST, "/\(index)/_update", #"{"changes":[\#(changes.joined(separator: ","))]}"#)
        guard reply.status == 200 else { throw TestFailure("write failed: \(reply.status) \(reply.text)") }
        id = end
    }
}
