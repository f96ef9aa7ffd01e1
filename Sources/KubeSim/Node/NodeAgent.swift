import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// kubesim's node: schedules pods onto itself, runs them (`PodWorker`), keeps EndpointSlices
/// and Endpoints of Services current, serves Service addresses (`ServiceProxy`) and names
/// (per-pod hosts files), and registers a Node object. Level-based passes on every change of
/// pods, Services and EndpointSlices, and on a resync.
actor NodeAgent {
    let context: NodeContext
    let store: ResourceStore
    let proxy: ServiceProxy
    let apiServer: @Sendable () -> (host: String, port: Int)
    private var workers: [String: PodWorker] = [:]
    /// The task running each worker, awaited on shutdown.
    private var workerTasks: [String: Task<Void, Never>] = [:]
    private var finishedWorkers: Set<String> = []
    private var serviceAddresses: Set<String> = []
    private var dnsSnapshot: DNSSnapshot = DNSSnapshot(records: [])
    /// The nftables script last applied in each pod network namespace.
    private var appliedPolicyScripts: [String: String] = [:]

    static let serviceType = Workloads.builtin("/services")
    static let sliceType = Workloads.builtin("discovery.k8s.io/endpointslices")
    static let endpointsType = Workloads.builtin("/endpoints")
    static let nodeType = Workloads.builtin("/nodes")
    static let namespaceType = Workloads.builtin("/namespaces")
    static let policyType = Workloads.builtin("networking.k8s.io/networkpolicies")
    static let watchedKeys = ["/pods", "/services", "discovery.k8s.io/endpointslices", "/namespaces", "networking.k8s.io/networkpolicies"]

    init(context: NodeContext, store: ResourceStore, apiServer: @escaping @Sendable () -> (host: String, port: Int)) {
        self.context = context
        self.store = store
        self.proxy = ServiceProxy(logger: context.logger)
        self.apiServer = apiServer
    }

    /// Creates the node's network (removing what a killed predecessor left). Before `run()`;
    /// an error here stops kubesim at start instead of leaving every pod Pending.
    func prepare() async throws {
        try await context.network.setUp()
    }

    /// Registers the Node object, then runs passes until cancelled or graceful shutdown; then
    /// stops every pod (SIGTERM, its grace period capped at 10 s, SIGKILL) and removes the network.
    func run() async {
        await store.enableGracefulPodDeletion(nodeName: context.configuration.nodeName)
        await registerNode()
        await ensureKubernetesService()
        await cancelWhenGracefulShutdown {
            await self.store.hub.onChanges(of: Self.watchedKeys, resync: .seconds(2)) { await self.pass() }
        }
        // The server cancels this task once its listener stops. Stopping the pods must not be
        // cancelled: in a cancelled task every wait for a process ends at once, so pods would
        // get SIGKILL without their grace period and the network commands would be killed.
        await Task { await self.shutdown() }.value
    }

    private func shutdown() async {
        context.logger.info("stopping the pods of the node", metadata: ["pods": "\(workers.count)"])
        for worker in workers.values { await worker.requestTermination(grace: .seconds(10)) }
        // Awaiting the tasks works in a cancelled task too (a sleep loop would spin).
        for task in workerTasks.values { await task.value }
        workers = [:]
        workerTasks = [:]
        await proxy.closeAll()
        await context.network.tearDown()
    }

    // MARK: Passes

    func pass() async {
        for uid in finishedWorkers {
            workers[uid] = nil
            workerTasks[uid] = nil
        }
        finishedWorkers = []
        let pods = await context.writer.list(Workloads.podType)
        // Endpoints, proxy and names first: a pod being deleted leaves the Services before
        // its containers hear of it, so no new connection reaches a stopping process.
        let services = await context.writer.list(Self.serviceType)
        await reconcileEndpoints(services: services, pods: pods)
        let slices = await context.writer.list(Self.sliceType)
        await reconcileProxy(services: services, slices: slices)
        await reconcileNames(services: services, slices: slices, pods: pods)
        await reconcileNetworkPolicies(pods: pods)
        var seen: Set<String> = []
        for pod in pods {
            seen.insert(pod.uid)
            let nodeName = pod.value(at: ["spec", "nodeName"])?.stringValue ?? ""
            if nodeName.isEmpty {
                if !pod.isDeleting { await schedule(pod) }
                continue
            }
            guard nodeName == context.configuration.nodeName else { continue }
            if let worker = workers[pod.uid] {
                await worker.observe(pod)
            } else if pod.isDeleting {
                // Never started here (or kubesim restarted): nothing to stop.
                _ = try? await store.delete(
                    Workloads.podType, namespace: pod.namespace, name: pod.name, propagationPolicy: "Background",
                    preconditionUID: pod.uid, preconditionResourceVersion: nil, dryRun: false, gracePeriodSeconds: 0)
            } else if !["Succeeded", "Failed"].contains(pod.value(at: ["status", "phase"])?.stringValue ?? "") {
                start(pod)
            }
        }
        // Force-deleted pods (grace period 0): stop their processes now.
        for (uid, worker) in workers where !seen.contains(uid) { await worker.requestTermination(grace: .zero) }
    }

    private func schedule(_ pod: JSONValue) async {
        var bound = pod
        bound.setValue(.string(context.configuration.nodeName), at: ["spec", "nodeName"])
        do {
            _ = try await context.writer.update(Workloads.podType, bound)
            await context.writer.record(
                kind: "Pod", apiVersion: "v1", namespace: pod.namespace, name: pod.name, uid: pod.uid, component: "default-scheduler",
                reason: "Scheduled", message: "Successfully assigned \(pod.namespace)/\(pod.name) to \(context.configuration.nodeName)")
        } catch {
            context.logger.debug("pod not scheduled yet", metadata: ["pod": "\(pod.namespace)/\(pod.name)", "error": "\(error.message)"])
        }
    }

    private func start(_ pod: JSONValue) {
        let worker = PodWorker(pod: pod, context: context)
        workers[pod.uid] = worker
        let uid = pod.uid
        workerTasks[uid] = Task {
            await worker.run(
                hosts: { namespace, address in await self.hostsFile(namespace: namespace, pod: pod, address: address) },
                removed: { await self.workerFinished(uid) })
        }
    }

    private func workerFinished(_ uid: String) { finishedWorkers.insert(uid) }

    // MARK: Node and the kubernetes Service

    private func registerNode() async {
        let now = JSONValue.string(Timestamps.format(Date()))
        let node: JSONValue = [
            "apiVersion": "v1", "kind": "Node",
            "metadata": [
                "name": .string(context.configuration.nodeName),
                "labels": [
                    "kubernetes.io/hostname": .string(context.configuration.nodeName), "kubernetes.io/os": "linux",
                    "node-role.kubernetes.io/control-plane": "",
                ],
            ],
            "spec": ["podCIDR": .string("\(context.configuration.podSubnet).0.0/16")],
        ]
        _ = try? await context.writer.create(Self.nodeType, node)
        guard var stored = try? await store.get(Self.nodeType, namespace: "", name: context.configuration.nodeName) else { return }
        stored["status"] = [
            "conditions": [
                [
                    "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubesim is posting ready status",
                    "lastHeartbeatTime": now, "lastTransitionTime": now,
                ]
            ],
            "addresses": [
                ["type": "InternalIP", "address": .string(context.configuration.gateway)],
                ["type": "Hostname", "address": .string(context.configuration.nodeName)],
            ],
            "capacity": ["cpu": .string(String(ProcessInfo.processInfo.activeProcessorCount)), "memory": "16Gi", "pods": "110"],
            "allocatable": ["cpu": .string(String(ProcessInfo.processInfo.activeProcessorCount)), "memory": "16Gi", "pods": "110"],
            "nodeInfo": [
                "kubeletVersion": "v1.32.0-kubesim", "containerRuntimeVersion": "kubesim://processes", "operatingSystem": "linux",
                "architecture": "amd64", "osImage": "kubesim",
            ],
        ]
        try? await context.writer.updateStatus(Self.nodeType, stored)
    }

    /// `default/kubernetes` at x.y.0.1:443, forwarded to kubesim itself (in-cluster clients).
    private func ensureKubernetesService() async {
        let service: JSONValue = [
            "apiVersion": "v1", "kind": "Service",
            "metadata": [
                "name": "kubernetes", "namespace": "default",
                "labels": ["component": "apiserver", "provider": "kubernetes"],
            ],
            "spec": [
                "type": "ClusterIP", "clusterIP": .string(context.configuration.kubernetesServiceIP),
                "ports": [["name": "https", "port": 443, "protocol": "TCP", "targetPort": .int(Int64(apiServer().port))]],
            ],
        ]
        _ = try? await context.writer.create(Self.serviceType, service)
    }

    // MARK: Endpoints

    /// One EndpointSlice (and the legacy Endpoints) per Service with a selector, from the pods it selects.
    private func reconcileEndpoints(services: [JSONValue], pods: [JSONValue]) async {
        let slices = await context.writer.list(Self.sliceType)
        let endpoints = await context.writer.list(Self.endpointsType)
        for service in services where !service.isDeleting {
            guard let selector = service.value(at: ["spec", "selector"])?.objectValue, !selector.isEmpty else { continue }
            let wanted = selector.compactMapValues(\.stringValue)
            let selected = pods.filter { pod in
                pod.namespace == service.namespace && wanted.allSatisfy { pod.labels[$0.key] == $0.value }
                    && pod.value(at: ["status", "podIP"])?.stringValue != nil
            }.sorted { $0.name < $1.name }
            let (slice, legacy) = EndpointBuilder.objects(service: service, pods: selected)
            let existingSlice = slices.first { $0.namespace == service.namespace && $0.name == slice.name }
            await write(Self.sliceType, slice, over: existingSlice, comparing: ["endpoints", "ports", "addressType"])
            let existingLegacy = endpoints.first { $0.namespace == service.namespace && $0.name == service.name }
            await write(Self.endpointsType, legacy, over: existingLegacy, comparing: ["subsets"])
        }
    }

    private func write(_ type: ResourceType, _ object: JSONValue, over existing: JSONValue?, comparing keys: [String]) async {
        do {
            if var existing {
                if keys.allSatisfy({ existing[$0] == object[$0] }) { return }
                for key in keys { existing[key] = object[key] }
                _ = try await context.writer.update(type, existing)
            } else {
                _ = try await context.writer.create(type, object)
            }
        } catch {
            context.logger.debug("endpoints not written", metadata: ["name": "\(object.name)", "error": "\(error.message)"])
        }
    }

    // MARK: Service proxy

    private func reconcileProxy(services: [JSONValue], slices: [JSONValue]) async {
        var table: [ServiceProxy.Listener: [ServiceProxy.Backend]] = [:]
        var addresses: Set<String> = []
        let prefix = context.configuration.serviceSubnet + "."
        for service in services where !service.isDeleting {
            guard let clusterIP = service.value(at: ["spec", "clusterIP"])?.stringValue, clusterIP.hasPrefix(prefix) else { continue }
            addresses.insert(clusterIP)
            let own = slices.filter {
                $0.namespace == service.namespace && $0.labels["kubernetes.io/service-name"] == service.name
            }
            for port in service.value(at: ["spec", "ports"])?.arrayValue ?? []
            where (port["protocol"]?.stringValue ?? "TCP") == "TCP" {
                guard let number = port["port"]?.intValue else { continue }
                var backends: [ServiceProxy.Backend]
                if service.namespace == "default", service.name == "kubernetes" {
                    let server = apiServer()
                    backends = [.init(host: server.host == "0.0.0.0" ? "127.0.0.1" : server.host, port: server.port)]
                } else {
                    backends = EndpointBuilder.backends(port: port, slices: own)
                }
                table[.init(host: clusterIP, port: Int(number))] = backends
                if let nodePort = port["nodePort"]?.intValue { table[.init(host: "127.0.0.1", port: Int(nodePort))] = backends }
            }
        }
        for address in addresses.subtracting(serviceAddresses) {
            do { try await context.network.addServiceAddress(address) } catch {
                context.logger.warning("cannot add a service address", metadata: ["address": "\(address)", "error": "\(error)"])
            }
        }
        for address in serviceAddresses.subtracting(addresses) { await context.network.removeServiceAddress(address) }
        serviceAddresses = addresses
        await proxy.apply(table)
    }

    // MARK: NetworkPolicies

    /// Every pod's ingress as the policies say: the Service proxy checks each connection, and
    /// each pod's network namespace gets its nftables rules (pod-to-pod traffic).
    private func reconcileNetworkPolicies(pods: [JSONValue]) async {
        let snapshot = NetworkPolicySnapshot(
            pods: pods, namespaces: await context.writer.list(Self.namespaceType), policies: await context.writer.list(Self.policyType))
        proxy.setPolicy(snapshot, podAddresses: Set(pods.compactMap { $0.value(at: ["status", "podIP"])?.stringValue }))
        var live: Set<String> = []
        for worker in workers.values {
            guard let namespace = await worker.hostsNamespace, let address = await worker.address else { continue }
            live.insert(namespace)
            let script = snapshot.nftScript(
                for: address, podSubnet: context.configuration.podSubnet, gateway: context.configuration.gateway)
            guard appliedPolicyScripts[namespace] != script else { continue }
            let file = "\(context.configuration.stateDirectory)/nft-\(namespace).rules"
            do {
                try script.write(toFile: file, atomically: true, encoding: .utf8)
                try await HostCommand.run(context.tools.ip, ["netns", "exec", namespace, context.tools.nft, "-f", file])
                appliedPolicyScripts[namespace] = script
            } catch {
                context.logger.error(
                    "cannot apply the pod's NetworkPolicy rules", metadata: ["namespace": "\(namespace)", "error": "\(error)"])
            }
        }
        for namespace in appliedPolicyScripts.keys where !live.contains(namespace) {
            appliedPolicyScripts[namespace] = nil
            try? FileManager.default.removeItem(atPath: "\(context.configuration.stateDirectory)/nft-\(namespace).rules")
        }
    }

    // MARK: Names

    private func reconcileNames(services: [JSONValue], slices: [JSONValue], pods: [JSONValue]) async {
        let snapshot = DNSSnapshot(services: services, slices: slices, pods: pods)
        guard snapshot != dnsSnapshot else { return }
        dnsSnapshot = snapshot
        for worker in workers.values {
            guard let namespace = await worker.hostsNamespace, let address = await worker.address else { continue }
            let pod = await worker.pod
            await context.network.updateHosts(namespace: namespace, hosts: snapshot.hostsFile(for: pod, address: address))
        }
    }

    private func hostsFile(namespace: String, pod: JSONValue, address: String) -> String {
        dnsSnapshot.hostsFile(for: pod, address: address)
    }
}
