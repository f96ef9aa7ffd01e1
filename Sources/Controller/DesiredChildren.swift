import FpindexAPI
import JetStream
import Kubernetes

/// Where the controller mounts the NATS secrets in worker pods.
enum SecretMounts {
    static let credentialsDirectory = "/etc/fpindex/nats-creds"
    static let tlsDirectory = "/etc/fpindex/nats-tls"
    /// The proxies' bearer tokens; the kubelet updates the files when the Secret changes, and
    /// the proxy re-reads them (no restart for a rotation).
    static let proxyTokensDirectory = "/etc/fpindex/proxy-auth"
    /// The proxies' serving certificate (a `kubernetes.io/tls` Secret), reloaded when renewed.
    static let proxyTLSDirectory = "/etc/fpindex/proxy-tls"
}

/// The objects a cluster owns, built from the spec alone. Pure: table-tested, and compared
/// against what the API server holds to decide whether anything must be written.
public struct DesiredChildren: Sendable, Equatable {
    public var statefulSet: StatefulSet
    public var headlessService: Service
    public var readService: Service
    public var podDisruptionBudget: PodDisruptionBudget
    public var proxyDeployment: Deployment
    public var proxyService: Service
    /// Who may reach the index pods and the proxies; nil when `spec.networkPolicy.enabled` is false.
    public var indexNetworkPolicy: NetworkPolicy?
    public var proxyNetworkPolicy: NetworkPolicy?
    public var stream: StreamSettings
    /// Consumers wanted now: one per replica ordinal.
    public var consumers: [String]

    /// Updater probes and metrics port.
    public static let updaterPort = 8081
    public static let proxyPort = 8080
    /// Where each replica's volume is mounted in the fpindex container.
    public static let indexDataDirectory = "/data"

    /// The fpindex container's command line. The published image's CMD listens on 8080 and
    /// keeps its data in `/var/lib/fpindex` (owned by its own uid): the controller gives the
    /// whole command line instead, so the port, the volume and the probes agree whatever the
    /// image's CMD. `index.command` replaces it; `index.args` are appended either way.
    public static func indexCommandLine(_ model: ClusterModel, _ spec: FpindexCluster.Spec) -> [String] {
        let base =
            spec.index?.command
            ?? ["fpindex", "--dir", indexDataDirectory, "--host", "0.0.0.0", "--port", String(model.indexPort)]
        return base + (spec.index?.args ?? [])
    }

    public init(_ cluster: FpindexCluster) {
        self.init(model: ClusterModel(cluster), spec: cluster.spec)
    }

    public init(model: ClusterModel, spec: FpindexCluster.Spec) {
        stream = StreamSettings(
            name: model.streamName, subjectPrefix: model.subjectPrefix, replicas: model.streamReplicas,
            memoryStorage: model.memoryStorage)
        consumers = (0..<model.replicas).map(model.consumerName(ordinal:))
        statefulSet = Self.statefulSet(model, spec)
        headlessService = Self.service(
            model, name: model.indexName, component: "index", port: model.indexPort, headless: true)
        readService = Self.service(
            model, name: model.readServiceName, component: "index", port: model.indexPort, headless: false)
        proxyDeployment = Self.proxyDeployment(model, spec)
        proxyService = Self.service(
            model, name: model.proxyName, component: "proxy", port: Self.proxyPort, headless: false)
        if model.proxyLegacyPort != 0 {
            proxyService.spec?.ports?.append(
                Service.Port(name: "legacy", port: model.proxyLegacyPort, targetPort: .string("legacy")))
        }
        var pdb = PodDisruptionBudget()
        pdb.metadata = Self.metadata(model, name: model.indexName, component: "index")
        var pdbSpec = PodDisruptionBudget.Spec()
        pdbSpec.maxUnavailable = .int(1)
        pdbSpec.selector = LabelSelector(matchLabels: model.selectorLabels(component: "index"))
        pdb.spec = pdbSpec
        podDisruptionBudget = pdb
        if model.networkPolicyEnabled {
            indexNetworkPolicy = Self.indexNetworkPolicy(model)
            proxyNetworkPolicy = Self.proxyNetworkPolicy(model)
        }
    }

    /// Index pods take the index port only from this cluster's proxies and the readers; the
    /// updater in the same pod reaches fpindex over loopback, which no policy filters, and
    /// the node's kubelet may always probe its pods. Monitoring peers may scrape the index
    /// port's metrics and the updater's probes and metrics port.
    static func indexNetworkPolicy(_ model: ClusterModel) -> NetworkPolicy {
        let proxies: JSONValue = [
            "podSelector": ["matchLabels": .object(model.selectorLabels(component: "proxy").mapValues { .string($0) })]
        ]
        var rules = [
            NetworkPolicy.IngressRule(from: [proxies] + model.networkReaders, ports: [.init(port: .int(model.indexPort))])
        ]
        if !model.networkMonitoring.isEmpty {
            rules.append(
                .init(from: model.networkMonitoring, ports: [.init(port: .int(model.indexPort)), .init(port: .int(updaterPort))]))
        }
        var policy = NetworkPolicy()
        policy.metadata = metadata(model, name: model.indexName, component: "index")
        policy.spec = .init(
            podSelector: LabelSelector(matchLabels: model.selectorLabels(component: "index")), policyTypes: ["Ingress"], ingress: rules)
        return policy
    }

    /// Proxies take writes (HTTP and the legacy port) from the writers, or from anywhere when
    /// none is named; monitoring peers may scrape the HTTP port's metrics.
    static func proxyNetworkPolicy(_ model: ClusterModel) -> NetworkPolicy {
        var ports: [NetworkPolicy.Port] = [.init(port: .int(proxyPort))]
        if model.proxyLegacyPort != 0 { ports.append(.init(port: .int(model.proxyLegacyPort))) }
        var rules = [NetworkPolicy.IngressRule(from: model.networkWriters.isEmpty ? nil : model.networkWriters, ports: ports)]
        if !model.networkWriters.isEmpty, !model.networkMonitoring.isEmpty {
            rules.append(.init(from: model.networkMonitoring, ports: [.init(port: .int(proxyPort))]))
        }
        var policy = NetworkPolicy()
        policy.metadata = metadata(model, name: model.proxyName, component: "proxy")
        policy.spec = .init(
            podSelector: LabelSelector(matchLabels: model.selectorLabels(component: "proxy")), policyTypes: ["Ingress"], ingress: rules)
        return policy
    }

    /// The conventional scrape annotations (Prometheus's `kubernetes_sd` examples, most Helm
    /// charts) for the process whose metrics matter most in the pod: the updater in an index pod
    /// (lag, batches), the proxy in a proxy pod. They name one port per pod: fpindex's own
    /// metrics on the index port are scraped by port name (`http` of the `fpindex` container,
    /// manifests/monitoring/prometheus.yaml and podmonitor.yaml).
    static func scrapeAnnotations(port: Int, https: Bool = false) -> [String: String] {
        var annotations = [
            "prometheus.io/scrape": "true", "prometheus.io/port": String(port), "prometheus.io/path": ProbePath.metrics,
        ]
        if https { annotations["prometheus.io/scheme"] = "https" }
        return annotations
    }

    static func metadata(_ model: ClusterModel, name: String, component: String) -> ObjectMeta {
        ObjectMeta(
            name: name, namespace: model.namespace, labels: model.labels(component: component),
            ownerReferences: [model.ownerReference])
    }

    /// Environment shared by the proxy and the updater: NATS (with the role's credentials) and the stream.
    static func natsEnvironment(_ model: ClusterModel, credentials: ClusterModel.NATSCredentials?) -> [EnvVar] {
        var env = [
            EnvVar(name: ComponentEnvironment.natsURL, value: model.natsURL),
            EnvVar(name: ComponentEnvironment.streamName, value: model.streamName),
            EnvVar(name: ComponentEnvironment.subjectPrefix, value: model.subjectPrefix),
            EnvVar(name: ComponentEnvironment.logLevel, value: "info"),
        ]
        switch credentials {
        case .file(let creds)?:
            env.append(
                EnvVar(name: ComponentEnvironment.natsCredentials, value: "\(SecretMounts.credentialsDirectory)/\(creds.key ?? "creds")"))
        case .user(let secretName)?:
            // From the Secret at container start (a changed password takes a restart, as it
            // would for the NATS server's own configuration).
            env.append(EnvVar(name: ComponentEnvironment.natsUser, valueFrom: .secret(secretName, key: "username")))
            env.append(EnvVar(name: ComponentEnvironment.natsPassword, valueFrom: .secret(secretName, key: "password")))
        case nil:
            break
        }
        if let tls = model.tlsSecret {
            env.append(EnvVar(name: ComponentEnvironment.natsTLSCA, value: "\(SecretMounts.tlsDirectory)/\(tls.key ?? "ca.crt")"))
            env.append(EnvVar(name: ComponentEnvironment.natsTLS, value: "true"))
        }
        return env
    }

    static func secretVolumes(_ model: ClusterModel, credentials: ClusterModel.NATSCredentials?) -> (
        volumes: [Volume], mounts: [VolumeMount]
    ) {
        var volumes: [Volume] = []
        var mounts: [VolumeMount] = []
        if case .file(let creds)? = credentials {
            var volume = Volume(name: "nats-creds")
            volume.secret = ["secretName": .string(creds.name), "defaultMode": 0o440]
            volumes.append(volume)
            mounts.append(VolumeMount(name: "nats-creds", mountPath: SecretMounts.credentialsDirectory, readOnly: true))
        }
        if let tls = model.tlsSecret {
            var volume = Volume(name: "nats-tls")
            volume.secret = ["secretName": .string(tls.name), "defaultMode": 0o440]
            volumes.append(volume)
            mounts.append(VolumeMount(name: "nats-tls", mountPath: SecretMounts.tlsDirectory, readOnly: true))
        }
        return (volumes, mounts)
    }

    /// A deleted pod leaves its Services while its containers are told to stop, and kube-proxy
    /// on every node takes a moment to hear of it: serving containers wait 5 s before SIGTERM
    /// so that no search or write is sent to a process that is already shutting down
    /// The hook runs the image's own `sleep` (`exec`), not the `sleep` handler: that handler
    /// does not exist before Kubernetes 1.29 (on by default only from 1.30), and an older server
    /// drops it and then refuses the hook as having no handler. Both images have `sleep`: the
    /// worker image is Debian, the published fpindex image Ubuntu.
    static let drainBeforeStop: JSONValue = ["preStop": ["exec": ["command": ["sleep", .string(String(ShutdownBudget.preStopSeconds))]]]]

    static let restrictedContainer: JSONValue = [
        "runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
        "capabilities": ["drop": ["ALL"]],
    ]

    static func podSpecCommon(_ model: ClusterModel, _ spec: FpindexCluster.Spec) -> PodSpec {
        var pod = PodSpec()
        pod.nodeSelector = spec.nodeSelector
        pod.tolerations = spec.tolerations
        pod.imagePullSecrets = spec.imagePullSecrets
        pod.securityContext = ["runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532]
        pod.automountServiceAccountToken = false
        return pod
    }

    static func statefulSet(_ model: ClusterModel, _ spec: FpindexCluster.Spec) -> StatefulSet {
        let (secretVolumes, secretMounts) = Self.secretVolumes(model, credentials: model.updaterCredentials)

        var index = Container(name: "fpindex")
        index.image = model.indexImage
        index.imagePullPolicy = model.imagePullPolicy
        index.command = Self.indexCommandLine(model, spec)
        index.env = spec.index?.env
        index.ports = [ContainerPort(name: "http", containerPort: model.indexPort)]
        index.resources = spec.index?.resources
        // The pod's fsGroup makes the volume writable by the (non-root) user fpindex runs as.
        index.volumeMounts = [VolumeMount(name: "data", mountPath: Self.indexDataDirectory)]
        // Serving once its indexes are loaded (fpindex opens its listener only then); no
        // liveness probe: loading 100 M fingerprints takes minutes, and a restart starts over.
        index.readinessProbe = .http(path: ProbePath.health, port: .string("http"), period: 5, failureThreshold: 2)
        index.securityContext = ["runAsNonRoot": true, "allowPrivilegeEscalation": false, "capabilities": ["drop": ["ALL"]]]
        index.lifecycle = drainBeforeStop

        var updater = Container(name: "updater")
        updater.image = model.workerImage
        updater.imagePullPolicy = model.imagePullPolicy
        updater.command = ["fpindex-updater"]
        updater.env =
            [EnvVar(name: ComponentEnvironment.consumerName, valueFrom: .field("metadata.name"))]
            + natsEnvironment(model, credentials: model.updaterCredentials) + [
                EnvVar(name: ComponentEnvironment.fpindexURL, value: "http://127.0.0.1:\(model.indexPort)"),
                EnvVar(name: ComponentEnvironment.listenAddress, value: "0.0.0.0:\(updaterPort)"),
                EnvVar(name: ComponentEnvironment.batch, value: String(model.batchSize)),
                EnvVar(name: ComponentEnvironment.maxLag, value: String(model.maxLag)),
            ]
        updater.ports = [ContainerPort(name: "probes", containerPort: updaterPort)]
        updater.resources = spec.updater?.resources
        updater.volumeMounts = secretMounts.isEmpty ? nil : secretMounts
        // Ready only once caught up (the updater's /_ready); alive while its loop runs.
        // One failed probe takes a lagging replica out of the read Service at once; a slow
        // answer on a busy node is not lag, so it gets 2 s rather than the kubelet's 1 s.
        updater.readinessProbe = .http(path: ProbePath.ready, port: .string("probes"), period: 2, failureThreshold: 1)
        updater.readinessProbe?.timeoutSeconds = 2
        updater.livenessProbe = .http(path: ProbePath.health, port: .string("probes"), period: 10, failureThreshold: 3)
        // A liveness kill costs a replay from the checkpoint: a loaded node answering slowly (the
        // kubelet's default is 1 s) must not cause one.
        updater.livenessProbe?.timeoutSeconds = 5
        // A replica replaying millions of messages is slow to start: give it up to 10 minutes.
        updater.startupProbe = .http(path: ProbePath.health, port: .string("probes"), period: 5, failureThreshold: 120)
        updater.securityContext = restrictedContainer

        var pod = podSpecCommon(model, spec)
        pod.containers = [index, updater]
        pod.volumes = secretVolumes.isEmpty ? nil : secretVolumes
        pod.affinity = spec.affinity
        pod.terminationGracePeriodSeconds = 60

        var template = PodTemplateSpec()
        template.metadata = ObjectMeta(labels: model.labels(component: "index"), annotations: scrapeAnnotations(port: updaterPort))
        template.spec = pod

        var claim = PersistentVolumeClaim()
        claim.apiVersion = nil
        claim.kind = nil
        claim.metadata = ObjectMeta(name: "data", labels: model.labels(component: "index"))
        var claimSpec = PersistentVolumeClaim.Spec()
        claimSpec.accessModes = ["ReadWriteOnce"]
        claimSpec.storageClassName = spec.index?.storage?.storageClassName
        claimSpec.resources = ResourceRequirements(requests: ["storage": spec.index?.storage?.size ?? "10Gi"])
        claim.spec = claimSpec

        var set = StatefulSet()
        set.metadata = metadata(model, name: model.indexName, component: "index")
        var setSpec = StatefulSet.Spec()
        setSpec.replicas = model.replicas
        setSpec.serviceName = model.indexName
        setSpec.selector = LabelSelector(matchLabels: model.selectorLabels(component: "index"))
        // Replicas catch up independently: scaling must not wait for each one in turn.
        setSpec.podManagementPolicy = "Parallel"
        setSpec.updateStrategy = ["type": "RollingUpdate", "rollingUpdate": ["partition": 0]]
        setSpec.template = template
        setSpec.volumeClaimTemplates = [claim]
        let retention = spec.index?.storage?.retentionPolicy
        setSpec.persistentVolumeClaimRetentionPolicy = StatefulSet.RetentionPolicy(
            whenDeleted: retention?.whenDeleted ?? "Retain", whenScaled: retention?.whenScaled ?? "Retain")
        set.spec = setSpec
        return set
    }

    static func proxyDeployment(_ model: ClusterModel, _ spec: FpindexCluster.Spec) -> Deployment {
        var (secretVolumes, secretMounts) = Self.secretVolumes(model, credentials: model.proxyCredentials)
        var proxy = Container(name: "proxy")
        proxy.image = model.workerImage
        proxy.imagePullPolicy = model.imagePullPolicy
        proxy.command = ["fpindex-proxy"]
        // The controller owns the stream; proxies only check it.
        proxy.args = ["--no-manage-stream"] + (spec.proxy?.args ?? [])
        proxy.env =
            natsEnvironment(model, credentials: model.proxyCredentials) + [
                EnvVar(name: ComponentEnvironment.fpindexURL, value: "http://\(model.readServiceName):\(model.indexPort)"),
                EnvVar(name: ComponentEnvironment.listenAddress, value: "0.0.0.0:\(proxyPort)"),
            ]
        if let tokens = model.proxyTokenSecret {
            // The whole Secret, not a subPath: only a whole volume gets the kubelet's updates.
            var volume = Volume(name: "proxy-auth")
            volume.secret = ["secretName": .string(tokens.name), "defaultMode": 0o440]
            secretVolumes.append(volume)
            secretMounts.append(VolumeMount(name: "proxy-auth", mountPath: SecretMounts.proxyTokensDirectory, readOnly: true))
            proxy.env? += [
                EnvVar(name: ComponentEnvironment.authTokenFile, value: "\(SecretMounts.proxyTokensDirectory)/\(tokens.key ?? "tokens")")
            ]
            if model.proxyProtectReads { proxy.env? += [EnvVar(name: ComponentEnvironment.protectReads, value: "true")] }
        }
        if let tlsSecret = model.proxyTLSSecret {
            var volume = Volume(name: "proxy-tls")
            volume.secret = ["secretName": .string(tlsSecret), "defaultMode": 0o440]
            secretVolumes.append(volume)
            secretMounts.append(VolumeMount(name: "proxy-tls", mountPath: SecretMounts.proxyTLSDirectory, readOnly: true))
            proxy.env? += [
                EnvVar(name: ComponentEnvironment.tlsCertificateFile, value: "\(SecretMounts.proxyTLSDirectory)/tls.crt"),
                EnvVar(name: ComponentEnvironment.tlsKeyFile, value: "\(SecretMounts.proxyTLSDirectory)/tls.key"),
            ]
        }
        proxy.ports = [ContainerPort(name: "http", containerPort: proxyPort)]
        if model.proxyLegacyPort != 0 {
            proxy.env? += [
                EnvVar(name: ComponentEnvironment.legacyListenAddress, value: "0.0.0.0:\(model.proxyLegacyPort)"),
                EnvVar(name: ComponentEnvironment.legacyIndex, value: model.proxyLegacyIndex),
            ]
            proxy.ports?.append(ContainerPort(name: "legacy", containerPort: model.proxyLegacyPort))
        }
        proxy.resources = spec.proxy?.resources
        proxy.volumeMounts = secretMounts.isEmpty ? nil : secretMounts
        proxy.readinessProbe = .http(path: ProbePath.ready, port: .string("http"), period: 2, failureThreshold: 2)
        proxy.livenessProbe = .http(path: ProbePath.health, port: .string("http"), period: 10, failureThreshold: 3)
        proxy.livenessProbe?.timeoutSeconds = 5
        if model.proxyTLSSecret != nil {
            // The kubelet does not verify a probe's certificate.
            proxy.readinessProbe?.httpGet?.scheme = "HTTPS"
            proxy.livenessProbe?.httpGet?.scheme = "HTTPS"
        }
        proxy.securityContext = restrictedContainer
        proxy.lifecycle = drainBeforeStop

        var pod = podSpecCommon(model, spec)
        pod.containers = [proxy]
        pod.volumes = secretVolumes.isEmpty ? nil : secretVolumes
        // The preStop wait, the proxy's own shutdown limit, and a margin before SIGKILL.
        pod.terminationGracePeriodSeconds = Int64(ShutdownBudget.servingPodGracePeriodSeconds)

        var template = PodTemplateSpec()
        template.metadata = ObjectMeta(
            labels: model.labels(component: "proxy"), annotations: scrapeAnnotations(port: proxyPort, https: model.proxyTLSSecret != nil))
        template.spec = pod

        var deployment = Deployment()
        deployment.metadata = metadata(model, name: model.proxyName, component: "proxy")
        var deploymentSpec = Deployment.Spec()
        deploymentSpec.replicas = model.proxyReplicas
        deploymentSpec.selector = LabelSelector(matchLabels: model.selectorLabels(component: "proxy"))
        deploymentSpec.template = template
        deploymentSpec.strategy = ["type": "RollingUpdate", "rollingUpdate": ["maxUnavailable": 0, "maxSurge": 1]]
        deployment.spec = deploymentSpec
        return deployment
    }

    static func service(_ model: ClusterModel, name: String, component: String, port: Int, headless: Bool) -> Service {
        var service = Service()
        service.metadata = metadata(model, name: name, component: component)
        var spec = Service.Spec()
        spec.selector = model.selectorLabels(component: component)
        spec.ports = [Service.Port(name: "http", port: port, targetPort: .string("http"))]
        if headless {
            spec.clusterIP = "None"
            // Peers resolve every replica, ready or catching up.
            spec.publishNotReadyAddresses = true
        }
        service.spec = spec
        return service
    }
}
