import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// What every pod worker shares: the node's settings, network, tools and the way to the store.
struct NodeContext: Sendable {
    let configuration: NodeConfiguration
    let writer: WorkloadWriter
    let network: PodNetwork
    let tools: NodeTools
    let imageMap: ImageMap
    let logs: PodLogs
    let prober: Prober
    /// What pods get as their service-account volume: the CA and a token kubesim accepts.
    let caCertificatePEM: String?
    let serviceAccountToken: String
    let logger: Logger

    static let component = "kubelet"

    func get(_ type: ResourceType, namespace: String, name: String) async -> JSONValue? {
        try? await writer.store.get(type, namespace: namespace, name: name)
    }
}

/// The kubelet's work for one pod: volumes, network namespace, containers (restarted per the
/// restart policy with back-off), probes, status; and on deletion SIGTERM, the grace period,
/// SIGKILL, clean-up, and the final removal of the pod object.
actor PodWorker {
    struct ContainerRecord {
        var spec: JSONValue
        var process: ContainerProcess?
        var restartCount = 0
        var state: JSONValue = ["waiting": ["reason": "ContainerCreating"]]
        var lastState: JSONValue = [:]
        var ready = false
        var started = false
        var everStarted = false
        var finished = false
    }

    let context: NodeContext
    let uid: String
    let namespace: String
    let name: String
    private(set) var pod: JSONValue
    private var netns: String?
    private var podIP: String?
    private var containers: [String: ContainerRecord] = [:]
    private var order: [String] = []
    private var initialized = false
    private var networkReady = false
    private var terminating = false
    private var grace: Duration = .seconds(30)
    private var conditionTimes: [String: (Bool, String)] = [:]
    private let startTime = Timestamps.format(Date())
    private var lastWritten: JSONValue?
    private var initProcess: ContainerProcess?
    /// When stopping began: the moment every process must be gone by.
    private var stopDeadline: ContinuousClock.Instant?
    private var podDirectory: String { "\(context.configuration.stateDirectory)/pods/\(namespace)_\(name)_\(uid)" }

    init(pod: JSONValue, context: NodeContext) {
        self.pod = pod
        self.context = context
        self.uid = pod.uid
        self.namespace = pod.namespace
        self.name = pod.name
        for container in pod.value(at: ["spec", "containers"])?.arrayValue ?? [] {
            let name = container["name"]?.stringValue ?? ""
            order.append(name)
            containers[name] = ContainerRecord(spec: container)
        }
    }

    var address: String? { podIP }
    var hostsNamespace: String? { netns }

    /// The pod as stored changed (labels, a deletion mark).
    func observe(_ updated: JSONValue) {
        pod = updated
        if updated.isDeleting { requestTermination(grace: Self.grace(of: updated)) }
    }

    static func grace(of pod: JSONValue) -> Duration {
        .seconds(
            pod.value(at: ["metadata", "deletionGracePeriodSeconds"])?.intValue
                ?? pod.value(at: ["spec", "terminationGracePeriodSeconds"])?.intValue ?? 30)
    }

    /// Stops the pod: containers get SIGTERM and `grace` to exit. A shorter grace on a second request wins.
    func requestTermination(grace: Duration) {
        if !terminating || grace < self.grace { self.grace = grace }
        terminating = true
        // A shorter grace period once stopping began (a forced delete, kubesim shutting down)
        // moves the deadline: every process is signalled again with what is left.
        if let deadline = stopDeadline, ContinuousClock.now + grace < deadline {
            stopDeadline = ContinuousClock.now + grace
            for process in order.compactMap({ containers[$0]?.process }) + [initProcess].compactMap({ $0 }) {
                Task { await process.stop(grace: grace) }
            }
        }
    }

    /// A process started while the pod was already being stopped (its start raced with the
    /// deletion) is stopped at once, within what is left of the grace period.
    private func stopIfLate(_ process: ContainerProcess) {
        guard let deadline = stopDeadline else { return }
        Task { await process.stop(grace: max(.zero, deadline - ContinuousClock.now)) }
    }

    /// The whole life of the pod. `hosts` gives the pod's `/etc/hosts` once its address is known.
    func run(hosts: @escaping @Sendable (String, String) async -> String, removed: @Sendable () async -> Void) async {
        await publishStatus()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.supervise(hosts: hosts) }
            // Until deleted; a pod whose containers all finished (restartPolicy Never or
            // OnFailure) stays too, as with the kubelet.
            while !terminating { try? await Task.sleep(for: .milliseconds(100)) }
            await stopContainers()
            await group.waitForAll()
        }
        await cleanUp()
        await removed()
    }

    private func supervise(hosts: @escaping @Sendable (String, String) async -> String) async {
        guard let volumes = await prepareVolumes(), !terminating else { return }
        do {
            let (name, address) = try await context.network.addPod(uid: uid, hosts: await hosts(namespace, "0.0.0.0"))
            netns = name
            podIP = address
            await context.network.updateHosts(namespace: name, hosts: await hosts(namespace, address))
            networkReady = true
            await publishStatus()
        } catch {
            await event("FailedCreatePodSandBox", "Failed to create pod sandbox: \(error)", warning: true)
            context.logger.error("cannot create the pod network", metadata: ["pod": "\(namespace)/\(name)", "error": "\(error)"])
            return
        }
        guard await runInitContainers(volumes: volumes) else { return }
        initialized = true
        await publishStatus()
        await withTaskGroup(of: Void.self) { group in
            for name in order {
                group.addTask { await self.superviseContainer(name, volumes: volumes) }
            }
            group.addTask { await self.refreshSecretAndConfigMapVolumes() }
            await group.waitForAll()
        }
    }

    /// How often Secret and ConfigMap volumes are brought up to date. The real kubelet does it
    /// on its pod sync (about a minute, plus its cache's delay); kubesim is quicker so tests
    /// need not wait, and a client that re-reads its files sees the same thing either way.
    static let volumeRefreshInterval: Duration = .seconds(2)

    /// Rewrites the files of Secret and ConfigMap volumes when their objects change, as the
    /// kubelet does for whole volumes (a `subPath` mount never changes: its file was bound at
    /// start). A Secret deleted meanwhile leaves its files as they were.
    private func refreshSecretAndConfigMapVolumes() async {
        let owner = ContainerSpecs.volumeOwner(pod)
        while !terminating {
            await pause(Self.volumeRefreshInterval)
            for volume in pod.value(at: ["spec", "volumes"])?.arrayValue ?? [] where !terminating {
                let folder = "\(podDirectory)/volumes/\(volume["name"]?.stringValue ?? "")"
                if let secretName = volume.value(at: ["secret", "secretName"])?.stringValue,
                    let secret = await context.get(Workloads.builtin("/secrets"), namespace: namespace, name: secretName)
                {
                    let files = (secret["data"]?.objectValue ?? [:]).compactMapValues { $0.stringValue.flatMap { Data(base64Encoded: $0) } }
                    Self.writeFiles(
                        folder, files, items: volume.value(at: ["secret", "items"]), mode: volume.value(at: ["secret", "defaultMode"]),
                        owner: owner)
                } else if let mapName = volume.value(at: ["configMap", "name"])?.stringValue,
                    let map = await context.get(Workloads.builtin("/configmaps"), namespace: namespace, name: mapName)
                {
                    let files = (map["data"]?.objectValue ?? [:]).compactMapValues { $0.stringValue.map { Data($0.utf8) } }
                    Self.writeFiles(
                        folder, files, items: volume.value(at: ["configMap", "items"]), mode: volume.value(at: ["configMap", "defaultMode"]),
                        owner: owner)
                }
            }
        }
    }

    // MARK: Volumes

    /// Host folders for the pod's volumes; waits (reporting why) while a claim is unbound or
    /// a Secret or ConfigMap is missing. nil when the pod is stopped meanwhile.
    private func prepareVolumes() async -> [String: String]? {
        var reported = ""
        while !terminating {
            switch await resolveVolumes() {
            case .success(let volumes): return volumes
            case .failure(let problem):
                if problem.message != reported {
                    reported = problem.message
                    await event(problem.reason, problem.message, warning: true)
                }
                await pause(.seconds(1))
            }
        }
        return nil
    }

    private func resolveVolumes() async -> Result<[String: String], ContainerStartError> {
        var volumes: [String: String] = [:]
        let owner = ContainerSpecs.volumeOwner(pod)
        var declared = pod.value(at: ["spec", "volumes"])?.arrayValue ?? []
        if Self.mountsServiceAccount(pod) {
            declared.append(["name": "kube-api-access", "kubesim-serviceaccount": true])
            for name in order {
                var mounts = containers[name]?.spec["volumeMounts"]?.arrayValue ?? []
                if !mounts.contains(where: { $0["mountPath"]?.stringValue == Self.serviceAccountPath }) {
                    mounts.append(["name": "kube-api-access", "mountPath": .string(Self.serviceAccountPath), "readOnly": true])
                    containers[name]?.spec["volumeMounts"] = .array(mounts)
                }
            }
        }
        for volume in declared {
            let volumeName = volume["name"]?.stringValue ?? ""
            // The name becomes a folder name: a DNS label, as the API server validates it.
            guard Self.isDNSLabel(volumeName) else {
                return .failure(.init(reason: "FailedMount", message: "volume name \"\(volumeName)\" is not a DNS label"))
            }
            let folder = "\(podDirectory)/volumes/\(volumeName)"
            if let claim = volume.value(at: ["persistentVolumeClaim", "claimName"])?.stringValue {
                guard let object = await context.get(Workloads.claimType, namespace: namespace, name: claim) else {
                    return .failure(.init(reason: "FailedScheduling", message: "persistentvolumeclaim \"\(claim)\" not found"))
                }
                guard object.value(at: ["status", "phase"])?.stringValue == "Bound",
                    let path = object.annotation(Workloads.volumePathAnnotation)
                else {
                    return .failure(.init(reason: "FailedScheduling", message: "pod has unbound immediate PersistentVolumeClaims"))
                }
                Self.own(path, owner)
                volumes[volumeName] = path
            } else if let path = volume.value(at: ["hostPath", "path"])?.stringValue {
                volumes[volumeName] = path
            } else if let secretName = volume.value(at: ["secret", "secretName"])?.stringValue {
                guard let secret = await context.get(Workloads.builtin("/secrets"), namespace: namespace, name: secretName)
                else {
                    if volume.value(at: ["secret", "optional"])?.boolValue == true { continue }
                    return .failure(
                        .init(
                            reason: "FailedMount",
                            message: "MountVolume.SetUp failed for volume \"\(volumeName)\" : secret \"\(secretName)\" not found"))
                }
                let files = (secret["data"]?.objectValue ?? [:]).compactMapValues { $0.stringValue.flatMap { Data(base64Encoded: $0) } }
                Self.writeFiles(
                    folder, files, items: volume.value(at: ["secret", "items"]), mode: volume.value(at: ["secret", "defaultMode"]),
                    owner: owner)
                volumes[volumeName] = folder
            } else if let mapName = volume.value(at: ["configMap", "name"])?.stringValue {
                guard let map = await context.get(Workloads.builtin("/configmaps"), namespace: namespace, name: mapName) else {
                    if volume.value(at: ["configMap", "optional"])?.boolValue == true { continue }
                    return .failure(
                        .init(
                            reason: "FailedMount",
                            message: "MountVolume.SetUp failed for volume \"\(volumeName)\" : configmap \"\(mapName)\" not found"))
                }
                let files = (map["data"]?.objectValue ?? [:]).compactMapValues { $0.stringValue.map { Data($0.utf8) } }
                Self.writeFiles(
                    folder, files, items: volume.value(at: ["configMap", "items"]), mode: volume.value(at: ["configMap", "defaultMode"]),
                    owner: owner)
                volumes[volumeName] = folder
            } else if volume["kubesim-serviceaccount"] != nil {
                var files = ["namespace": Data(namespace.utf8), "token": Data(context.serviceAccountToken.utf8)]
                if let ca = context.caCertificatePEM { files["ca.crt"] = Data(ca.utf8) }
                Self.writeFiles(folder, files, items: nil, mode: 0o644, owner: nil)
                volumes[volumeName] = folder
            } else {
                // emptyDir, and anything else as an empty folder.
                try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                Self.own(folder, owner)
                volumes[volumeName] = folder
            }
        }
        return .success(volumes)
    }

    static let serviceAccountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

    static func isDNSLabel(_ name: String) -> Bool {
        guard (1...63).contains(name.count), let first = name.first, let last = name.last else { return false }
        let allowed = { (c: Character) in c.isASCII && (c.isLowercase || c.isNumber || c == "-") }
        return name.allSatisfy(allowed) && first != "-" && last != "-"
    }

    static func mountsServiceAccount(_ pod: JSONValue) -> Bool {
        pod.value(at: ["spec", "automountServiceAccountToken"])?.boolValue != false
    }

    static func own(_ path: String, _ owner: (uid: Int, gid: Int)?) {
        guard let owner else { return }
        chown(path, uid_t(owner.uid), gid_t(owner.gid))
    }

    /// Brings `folder` to exactly `files` (or the `items` chosen from them): a changed file is
    /// written aside and renamed over the old one, so a reader sees the old content or the new,
    /// never half of it; files no longer wanted are removed.
    static func writeFiles(_ folder: String, _ files: [String: Data], items: JSONValue?, mode: JSONValue?, owner: (uid: Int, gid: Int)?) {
        let manager = FileManager.default
        try? manager.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var selected: [(String, Data)] = files.map { ($0.key, $0.value) }
        if let items = items?.arrayValue {
            selected = items.compactMap { item in
                guard let key = item["key"]?.stringValue, let data = files[key] else { return nil }
                return (item["path"]?.stringValue ?? key, data)
            }
        }
        selected.removeAll { $0.0.split(separator: "/").contains("..") }
        let permissions = Int(mode?.intValue ?? 0o644)
        for (path, data) in selected {
            let file = folder + "/" + path
            guard manager.contents(atPath: file) != data else { continue }
            try? manager.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let aside = (file as NSString).deletingLastPathComponent + "/..writing." + (file as NSString).lastPathComponent
            guard manager.createFile(atPath: aside, contents: data, attributes: [.posixPermissions: permissions]) else { continue }
            own(aside, owner)
            rename(aside, file)
        }
        let wanted = Set(selected.map(\.0))
        for path in (manager.subpaths(atPath: folder) ?? []) where !wanted.contains(path) {
            var isDirectory: ObjCBool = false
            if manager.fileExists(atPath: folder + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
                try? manager.removeItem(atPath: folder + "/" + path)
            }
        }
        own(folder, owner)
    }

    // MARK: Containers

    private func runInitContainers(volumes: [String: String]) async -> Bool {
        for container in pod.value(at: ["spec", "initContainers"])?.arrayValue ?? [] {
            var backoff = context.configuration.restartBackoff
            while !terminating {
                let label = container["name"]?.stringValue ?? "init"
                guard case .success(let launch) = await resolve(container, volumes: volumes), let netns else {
                    await pause(backoff)
                    continue
                }
                let logPath = "\(podDirectory)/\(label).log"
                if terminating { break }
                guard let process = try? ContainerProcess.start(launch, namespace: netns, tools: context.tools, logPath: logPath) else {
                    await pause(backoff)
                    continue
                }
                initProcess = process
                stopIfLate(process)
                context.logs.started(namespace: namespace, pod: name, uid: uid, container: label, path: logPath)
                let status = await process.exit.value
                initProcess = nil
                context.logs.stopped(namespace: namespace, pod: name, container: label)
                if status.code == 0 { break }
                await event("BackOff", "Back-off restarting failed init container \(label)", warning: true)
                await pause(backoff)
                backoff = min(backoff * 2, context.configuration.maxRestartBackoff)
            }
            if terminating { return false }
        }
        return true
    }

    private func resolve(_ container: JSONValue, volumes: [String: String]) async -> Result<ContainerLaunch, ContainerStartError> {
        var secrets: [String: JSONValue] = [:]
        var configMaps: [String: JSONValue] = [:]
        let references = Self.references(container)
        for secret in references.secrets {
            secrets[secret] = await context.get(Workloads.builtin("/secrets"), namespace: namespace, name: secret)
        }
        for map in references.configMaps {
            configMaps[map] = await context.get(Workloads.builtin("/configmaps"), namespace: namespace, name: map)
        }
        let podContext = PodContext(
            pod: pod, podIP: podIP ?? "", hostIP: context.configuration.gateway,
            kubernetesServiceHost: context.configuration.kubernetesServiceIP, secrets: secrets, configMaps: configMaps,
            volumes: volumes, imageMap: context.imageMap)
        return ContainerSpecs.launch(container, in: podContext)
    }

    static func references(_ container: JSONValue) -> (secrets: Set<String>, configMaps: Set<String>) {
        var secrets: Set<String> = []
        var maps: Set<String> = []
        for variable in container["env"]?.arrayValue ?? [] {
            if let name = variable.value(at: ["valueFrom", "secretKeyRef", "name"])?.stringValue { secrets.insert(name) }
            if let name = variable.value(at: ["valueFrom", "configMapKeyRef", "name"])?.stringValue { maps.insert(name) }
        }
        for source in container["envFrom"]?.arrayValue ?? [] {
            if let name = source.value(at: ["secretRef", "name"])?.stringValue { secrets.insert(name) }
            if let name = source.value(at: ["configMapRef", "name"])?.stringValue { maps.insert(name) }
        }
        return (secrets, maps)
    }

    private func superviseContainer(_ containerName: String, volumes: [String: String]) async {
        var backoff = context.configuration.restartBackoff
        let policy = pod.value(at: ["spec", "restartPolicy"])?.stringValue ?? "Always"
        while !terminating {
            guard let spec = containers[containerName]?.spec, let netns else { return }
            let image = spec["image"]?.stringValue ?? ""
            let launch: ContainerLaunch
            switch await resolve(spec, volumes: volumes) {
            case .failure(let problem):
                setState(containerName, ["waiting": ["reason": .string(problem.reason), "message": .string(problem.message)]])
                await publishStatus()
                await event("Failed", "Error: \(problem.message)", warning: true)
                await pause(backoff)
                backoff = min(backoff * 2, context.configuration.maxRestartBackoff)
                continue
            case .success(let resolved): launch = resolved
            }
            let restarts = containers[containerName]?.restartCount ?? 0
            let logPath = "\(podDirectory)/\(containerName)/\(restarts).log"
            try? FileManager.default.createDirectory(atPath: "\(podDirectory)/\(containerName)", withIntermediateDirectories: true)
            let process: ContainerProcess
            if terminating { return }
            do {
                process = try ContainerProcess.start(launch, namespace: netns, tools: context.tools, logPath: logPath)
                // Registered before any suspension, so stopContainers sees it.
                containers[containerName]?.process = process
                stopIfLate(process)
            } catch {
                setState(containerName, ["waiting": ["reason": "RunContainerError", "message": .string("\(error)")]])
                await publishStatus()
                await pause(backoff)
                continue
            }
            context.logs.started(namespace: namespace, pod: name, uid: uid, container: containerName, path: logPath)
            if restarts == 0, let warning = launch.warning { await event("RunningAsRoot", warning, warning: true) }
            if restarts == 0 {
                await event("Pulled", "Container image \"\(image)\" already present on machine (runs \(launch.argv[0]))")
            }
            await event("Created", "Created container \(containerName)")
            await event("Started", "Started container \(containerName)")
            containers[containerName]?.everStarted = true
            let startedAt = JSONValue.string(Timestamps.format(process.startedAt))
            setState(containerName, ["running": ["startedAt": startedAt]])
            let hasStartupProbe = spec["startupProbe"] != nil
            containers[containerName]?.started = !hasStartupProbe
            containers[containerName]?.ready = !hasStartupProbe && spec["readinessProbe"] == nil
            await publishStatus()

            let probes = Task { await self.runProbes(containerName, spec: spec, process: process) }
            let status = await process.exit.value
            probes.cancel()
            context.logs.stopped(namespace: namespace, pod: name, container: containerName)
            containers[containerName]?.process = nil
            containers[containerName]?.ready = false
            containers[containerName]?.started = false
            let reason = status.code == 0 ? "Completed" : "Error"
            var terminated: [String: JSONValue] = [
                "exitCode": .int(Int64(status.code)), "reason": .string(reason), "startedAt": startedAt,
                "finishedAt": .string(Timestamps.format(status.finishedAt)), "containerID": .string("kubesim://\(process.pid)"),
            ]
            if let signal = status.signal { terminated["signal"] = .int(Int64(signal)) }
            let restart = !terminating && (policy == "Always" || (policy == "OnFailure" && status.code != 0))
            if restart {
                containers[containerName]?.lastState = ["terminated": .object(terminated)]
                containers[containerName]?.restartCount += 1
                let ran = status.finishedAt.timeIntervalSince(process.startedAt)
                if ran > 60 { backoff = context.configuration.restartBackoff }
                setState(
                    containerName,
                    [
                        "waiting": [
                            "reason": "CrashLoopBackOff",
                            "message": .string(
                                "back-off \(backoff.components.seconds)s restarting failed container=\(containerName) pod=\(name)_\(namespace)(\(uid))"
                            ),
                        ]
                    ])
                await publishStatus()
                await event(
                    "BackOff", "Back-off restarting failed container \(containerName) in pod \(name)_\(namespace)(\(uid))", warning: true)
                await pause(backoff)
                backoff = min(backoff * 2, context.configuration.maxRestartBackoff)
            } else {
                setState(containerName, ["terminated": .object(terminated)])
                containers[containerName]?.finished = true
                await publishStatus()
                return
            }
        }
    }

    private func setState(_ container: String, _ state: JSONValue) { containers[container]?.state = state }

    /// Startup, then liveness and readiness probes of one run of a container, until cancelled.
    private func runProbes(_ containerName: String, spec: JSONValue, process: ContainerProcess) async {
        guard let podIP else { return }
        let prober = context.prober
        if let startup = spec["startupProbe"] {
            let probe = ProbeSpec(startup, container: spec)
            guard await probeLoop(probe, podIP: podIP, pid: process.pid, kind: "Startup", until: true) else {
                if !Task.isCancelled { await restartForProbe(containerName, process: process, kind: "startup") }
                return
            }
            containers[containerName]?.started = true
            if spec["readinessProbe"] == nil { containers[containerName]?.ready = true }
            await publishStatus()
        }
        await withTaskGroup(of: Void.self) { group in
            if let liveness = spec["livenessProbe"] {
                group.addTask {
                    let probe = ProbeSpec(liveness, container: spec)
                    if await !self.probeLoop(probe, podIP: podIP, pid: process.pid, kind: "Liveness", until: nil), !Task.isCancelled {
                        await self.restartForProbe(containerName, process: process, kind: "liveness")
                    }
                }
            }
            if let readiness = spec["readinessProbe"] {
                group.addTask {
                    let probe = ProbeSpec(readiness, container: spec)
                    try? await Task.sleep(for: probe.initialDelay)
                    var successes = 0
                    var failures = 0
                    while !Task.isCancelled {
                        let failure = await prober.check(probe, podIP: podIP, pid: process.pid)
                        if let failure {
                            successes = 0
                            failures += 1
                            if failures == probe.failureThreshold || (failures == 1 && failures < probe.failureThreshold) {
                                await self.event("Unhealthy", "Readiness probe failed: \(failure)", warning: true)
                            }
                            if failures >= probe.failureThreshold { await self.setReady(containerName, false) }
                        } else {
                            failures = 0
                            successes += 1
                            if successes >= probe.successThreshold { await self.setReady(containerName, true) }
                        }
                        try? await Task.sleep(for: probe.period)
                    }
                }
            }
            await group.waitForAll()
        }
    }

    /// Probes until `failureThreshold` failures in a row (false), or, with `until: true`,
    /// until a success (true). Cancelled: false.
    private func probeLoop(_ probe: ProbeSpec, podIP: String, pid: Int32, kind: String, until: Bool?) async -> Bool {
        try? await Task.sleep(for: probe.initialDelay)
        var failures = 0
        while !Task.isCancelled {
            if let failure = await context.prober.check(probe, podIP: podIP, pid: pid) {
                failures += 1
                if kind != "Startup" || failures >= probe.failureThreshold {
                    await event("Unhealthy", "\(kind) probe failed: \(failure)", warning: true)
                }
                if failures >= probe.failureThreshold { return false }
            } else {
                failures = 0
                if until == true { return true }
            }
            try? await Task.sleep(for: probe.period)
        }
        return false
    }

    private func setReady(_ container: String, _ ready: Bool) async {
        guard containers[container]?.ready != ready, containers[container]?.process != nil else { return }
        containers[container]?.ready = ready
        await publishStatus()
    }

    private func restartForProbe(_ containerName: String, process: ContainerProcess, kind: String) async {
        guard containers[containerName]?.process === process, !terminating else { return }
        await event("Killing", "Container \(containerName) failed \(kind) probe, will be restarted")
        let grace = Self.grace(of: pod)
        Task { await process.stop(grace: grace) }
    }

    /// Sleeps, but returns early (within 100 ms) once the pod is being stopped.
    private func pause(_ duration: Duration) async {
        let deadline = ContinuousClock.now + duration
        while !terminating, !Task.isCancelled {
            let left = deadline - ContinuousClock.now
            if left <= .zero { return }
            try? await Task.sleep(for: min(left, .milliseconds(100)))
        }
    }

    // MARK: Stopping

    /// Stops every running container within the grace period: its preStop hook first (the
    /// time it takes counts against the grace period), then SIGTERM, then SIGKILL when the
    /// grace period is over.
    private func stopContainers() async {
        let deadline = ContinuousClock.now + grace
        stopDeadline = deadline
        await event("Killing", "Stopping pod (grace period \(grace.components.seconds)s)")
        let running = order.compactMap { name in containers[name].flatMap { record in record.process.map { (record.spec, $0) } } }
        let initRun = initProcess
        let prober = context.prober
        let podIP = podIP ?? ""
        await withTaskGroup(of: Void.self) { group in
            for (spec, process) in running {
                group.addTask {
                    if let hook = spec.value(at: ["lifecycle", "preStop"]) {
                        await Self.runHook(hook, container: spec, prober: prober, podIP: podIP, pid: process.pid, until: deadline)
                    }
                    await process.stop(grace: max(.zero, deadline - ContinuousClock.now))
                }
            }
            if let initRun { group.addTask { await initRun.stop(grace: max(.zero, deadline - ContinuousClock.now)) } }
        }
    }

    /// A lifecycle handler: `sleep`, `exec` or `httpGet`, cut short at `deadline`.
    static func runHook(
        _ hook: JSONValue, container: JSONValue, prober: Prober, podIP: String, pid: Int32, until deadline: ContinuousClock.Instant
    )
        async
    {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { return }
        if let seconds = hook.value(at: ["sleep", "seconds"])?.intValue {
            try? await Task.sleep(for: min(.seconds(seconds), left))
            return
        }
        var probe = ProbeSpec(hook, container: container)
        probe.timeout = left
        let hookTask = Task { _ = await prober.check(probe, podIP: podIP, pid: pid) }
        let timer = Task {
            try? await Task.sleep(for: left)
            hookTask.cancel()
        }
        await hookTask.value
        timer.cancel()
    }

    /// Removes the network, the logs and files, then the pod object.
    private func cleanUp() async {
        if let netns { await context.network.removeNamespace(netns) }
        context.logs.forget(namespace: namespace, pod: name, uid: uid)
        try? FileManager.default.removeItem(atPath: podDirectory)
        _ = try? await context.writer.store.delete(
            Workloads.podType, namespace: namespace, name: name, propagationPolicy: "Background", preconditionUID: uid,
            preconditionResourceVersion: nil, dryRun: false, gracePeriodSeconds: 0)
    }

    // MARK: Status

    private func event(_ reason: String, _ message: String, warning: Bool = false) async {
        await context.writer.record(
            kind: "Pod", apiVersion: "v1", namespace: namespace, name: name, uid: uid, component: NodeContext.component,
            reason: reason, message: message, type: warning ? "Warning" : "Normal")
    }

    /// The status as the kubelet reports it; written when it changed.
    func publishStatus() async {
        let records = order.compactMap { containers[$0] }
        let allReady = !records.isEmpty && records.allSatisfy(\.ready)
        let allFinished = !records.isEmpty && records.allSatisfy(\.finished)
        var phase = "Pending"
        if allFinished {
            phase = records.allSatisfy({ $0.state.value(at: ["terminated", "exitCode"])?.intValue == 0 }) ? "Succeeded" : "Failed"
        } else if initialized, records.allSatisfy({ $0.everStarted || $0.finished }) {
            phase = "Running"
        }
        func condition(_ type: String, _ value: Bool) -> JSONValue {
            let now = Timestamps.format(Date())
            if conditionTimes[type]?.0 != value { conditionTimes[type] = (value, now) }
            return [
                "type": .string(type), "status": value ? "True" : "False", "lastProbeTime": .null,
                "lastTransitionTime": .string(conditionTimes[type]?.1 ?? now),
            ]
        }
        var status: [String: JSONValue] = [
            "phase": .string(phase),
            "conditions": [
                condition("PodReadyToStartContainers", networkReady), condition("Initialized", initialized),
                condition("Ready", allReady && !terminating), condition("ContainersReady", allReady),
                condition("PodScheduled", true),
            ],
            "hostIP": .string(context.configuration.gateway), "hostIPs": [["ip": .string(context.configuration.gateway)]],
            "startTime": .string(startTime), "qosClass": "BestEffort",
            "containerStatuses": .array(
                records.map { record in
                    var status: [String: JSONValue] = [
                        "name": record.spec["name"] ?? "", "image": record.spec["image"] ?? "",
                        "imageID": .string("kubesim://\(ImageMap.repository(of: record.spec["image"]?.stringValue ?? ""))"),
                        "ready": .bool(record.ready), "started": .bool(record.started),
                        "restartCount": .int(Int64(record.restartCount)), "state": record.state, "lastState": record.lastState,
                    ]
                    if let process = record.process { status["containerID"] = .string("kubesim://\(process.pid)") }
                    return .object(status)
                }),
        ]
        if let podIP {
            status["podIP"] = .string(podIP)
            status["podIPs"] = [["ip": .string(podIP)]]
        }
        let next = JSONValue.object(status)
        if lastWritten == next { return }
        var updated = pod
        updated["status"] = next
        updated.setValue(nil, at: ["metadata", "resourceVersion"])
        do {
            try await context.writer.updateStatus(Workloads.podType, updated)
            lastWritten = next
        } catch {
            context.logger.debug("pod status not written", metadata: ["pod": "\(namespace)/\(name)", "error": "\(error.message)"])
        }
    }
}
