import Controller
import Foundation
import FpindexAPI
import JetStream
import Kubernetes
import ReplicaConsumer
import Testing

@Suite("Desired children")
struct DesiredChildrenTests {
    @Test func statefulSetCarriesTheUpdaterSidecar() throws {
        var cluster = Fixtures.cluster(replicas: 3)
        cluster.spec.nats?.credentialsSecret = .init(name: "nats-creds", key: "user.creds")
        let desired = DesiredChildren(cluster)
        let set = desired.statefulSet
        #expect(set.metadata.name == "main-index")
        #expect(set.metadata.ownerReferences == [ClusterModel(cluster).ownerReference])
        #expect(set.metadata.labels?["app.kubernetes.io/managed-by"] == "fpindex-controller")
        #expect(set.spec?.replicas == 3)
        #expect(set.spec?.serviceName == "main-index")
        #expect(set.spec?.podManagementPolicy == "Parallel")
        #expect(set.spec?.volumeClaimTemplates?.first?.spec?.resources?.requests?["storage"] == "10Gi")
        let containers = try #require(set.spec?.template?.spec?.containers)
        #expect(containers.map(\.name) == ["fpindex", "updater"])
        #expect(containers[0].image == "fpindex:1")
        #expect(
            containers[0].command == [
                "fpindex", "--dir", "/data", "--host", "0.0.0.0", "--port", "6081", "--checkpoint-threshold", "500000",
            ])
        #expect(containers[0].args == nil)
        let updater = containers[1]
        #expect(updater.image == "fpindex-cluster:1")
        #expect(updater.command == ["fpindex-updater"])
        let env = Dictionary(uniqueKeysWithValues: (updater.env ?? []).map { ($0.name, $0) })
        #expect(env["CONSUMER_NAME"]?.valueFrom?.fieldRef?.fieldPath == "metadata.name")
        #expect(env["FPINDEX_URL"]?.value == "http://127.0.0.1:6081")
        #expect(env["NATS_URL"]?.value == "nats://nats:4222")
        #expect(env["NATS_CREDS"]?.value == "/etc/fpindex/nats-creds/user.creds")
        #expect(env["MAX_LAG"]?.value == "100")
        #expect(updater.readinessProbe?.httpGet?.path == "/_ready")
        #expect(updater.readinessProbe?.failureThreshold == 1)
        #expect(updater.readinessProbe?.timeoutSeconds == 2)
        #expect(updater.livenessProbe?.httpGet?.path == "/_health")
        #expect(updater.startupProbe != nil)
        #expect(updater.volumeMounts?.first?.mountPath == "/etc/fpindex/nats-creds")
        #expect(set.spec?.template?.spec?.volumes?.first?.secret?["secretName"]?.string == "nats-creds")
        #expect(desired.consumers == ["main-index-0", "main-index-1", "main-index-2"])
    }

    /// The fpindex container runs the published image as it is: the whole command line is
    /// given (its CMD would listen on 8080 and write /var/lib/fpindex), on the volume, as a
    /// non-root user the volume is writable by, ready on its own /_health.
    @Test(arguments: [
        (nil, nil, nil, ["fpindex", "--dir", "/data", "--host", "0.0.0.0", "--port", "6081"]),
        (7000, nil, ["--load-concurrency", "2"], ["fpindex", "--dir", "/data", "--host", "0.0.0.0", "--port", "7000", "--load-concurrency", "2"]),
        (nil, ["/opt/fpindex/bin/fpindex", "--dir", "/data", "--port", "6081"], ["-v"], ["/opt/fpindex/bin/fpindex", "--dir", "/data", "--port", "6081", "-v"]),
    ] as [(Int?, [String]?, [String]?, [String])])
    func indexContainerCommandLine(port: Int?, command: [String]?, args: [String]?, expected: [String]) throws {
        var cluster = Fixtures.cluster()
        cluster.spec.index?.port = port
        cluster.spec.index?.command = command
        cluster.spec.index?.args = args
        let pod = try #require(DesiredChildren(cluster).statefulSet.spec?.template?.spec)
        let index = try #require(pod.containers.first { $0.name == "fpindex" })
        #expect(index.command == expected)
        #expect(index.args == nil)
        #expect(index.ports?.first?.containerPort == (port ?? 6081))
        #expect(index.volumeMounts?.first?.mountPath == "/data")
        #expect(index.readinessProbe?.httpGet?.path == "/_health")
        #expect(index.readinessProbe?.httpGet?.port == .string("http"))
        #expect(index.livenessProbe == nil)
        #expect(index.securityContext?["runAsNonRoot"]?.bool == true)
        #expect(index.lifecycle?[path: ["preStop", "exec", "command"]] == ["sleep", "5"])
        #expect(pod.securityContext?["runAsUser"]?.int == 65532)
        #expect(pod.securityContext?["fsGroup"]?.int == 65532)
        let updater = try #require(pod.containers.first { $0.name == "updater" })
        #expect(updater.env?.first { $0.name == "FPINDEX_URL" }?.value == "http://127.0.0.1:\(port ?? 6081)")
    }

    @Test func servicesProxyAndBudget() {
        let desired = DesiredChildren(Fixtures.cluster())
        #expect(desired.headlessService.spec?.clusterIP == "None")
        #expect(desired.headlessService.spec?.publishNotReadyAddresses == true)
        #expect(desired.readService.metadata.name == "main-index-read")
        #expect(desired.readService.spec?.clusterIP == nil)
        #expect(desired.readService.spec?.selector?["app.kubernetes.io/component"] == "index")
        #expect(desired.proxyService.spec?.selector?["app.kubernetes.io/component"] == "proxy")
        let proxy = desired.proxyDeployment.spec?.template?.spec?.containers.first
        #expect(proxy?.args?.first == "--no-manage-stream")
        #expect(proxy?.env?.first { $0.name == "FPINDEX_URL" }?.value == "http://main-index-read:6081")
        #expect(desired.proxyDeployment.spec?.replicas == 2)
        #expect(desired.podDisruptionBudget.spec?.maxUnavailable == .int(1))
        #expect(desired.stream.name == "fpindex")
        #expect(desired.stream.subjectPrefix == "fpindex")
    }

    /// The legacy line protocol is on by default at 6080 (AcoustID's clients connect there),
    /// on the proxy pods and the proxy Service; 0 turns it off.
    @Test func theLegacyPortOnTheProxies() {
        let desired = DesiredChildren(Fixtures.cluster())
        let proxy = desired.proxyDeployment.spec?.template?.spec?.containers.first
        #expect(proxy?.env?.first { $0.name == "LEGACY_LISTEN_ADDR" }?.value == "0.0.0.0:6080")
        #expect(proxy?.env?.first { $0.name == "LEGACY_INDEX" }?.value == "main")
        #expect(proxy?.ports?.contains(ContainerPort(name: "legacy", containerPort: 6080)) == true)
        #expect(desired.proxyService.spec?.ports?.map(\.name) == ["http", "legacy"])
        #expect(desired.proxyService.spec?.ports?.last?.targetPort == .string("legacy"))

        var cluster = Fixtures.cluster()
        var settings = FpindexCluster.Proxy()
        settings.legacyPort = 0
        cluster.spec.proxy = settings
        let off = DesiredChildren(cluster)
        let quiet = off.proxyDeployment.spec?.template?.spec?.containers.first
        #expect(quiet?.env?.contains { $0.name == "LEGACY_LISTEN_ADDR" } == false)
        #expect(quiet?.ports?.map(\.name) == ["http"])
        #expect(off.proxyService.spec?.ports?.map(\.name) == ["http"])

        settings.legacyPort = 16080
        settings.legacyIndex = "acoustid"
        cluster.spec.proxy = settings
        let moved = DesiredChildren(cluster)
        let env = moved.proxyDeployment.spec?.template?.spec?.containers.first?.env
        #expect(env?.first { $0.name == "LEGACY_LISTEN_ADDR" }?.value == "0.0.0.0:16080")
        #expect(env?.first { $0.name == "LEGACY_INDEX" }?.value == "acoustid")
        #expect(moved.proxyService.spec?.ports?.last?.port == 16080)
    }

    /// A pod's grace period covers each container's preStop wait plus the process's own
    /// shutdown limit, with a margin: otherwise the kubelet's SIGKILL can cut a shutdown that
    /// is still within its allowance (the proxy's was exactly 5 s + 25 s = 30 s).
    @Test func gracePeriodsLeaveAMarginAfterPreStopAndShutdown() throws {
        let desired = DesiredChildren(Fixtures.cluster())
        for pod in [desired.statefulSet.spec?.template?.spec, desired.proxyDeployment.spec?.template?.spec] {
            let pod = try #require(pod)
            let grace = try #require(pod.terminationGracePeriodSeconds)
            for container in pod.containers {
                let preStop = container.lifecycle?[path: ["preStop", "exec", "command"]]?.array?.last?.string.flatMap { Int($0) } ?? 0
                let needed = preStop + ShutdownBudget.gracefulShutdownSeconds + ShutdownBudget.marginSeconds
                #expect(grace >= Int64(needed), "\(container.name): grace \(grace) s < preStop \(preStop) s + shutdown + margin")
            }
        }
    }
}

@Suite("Planner")
struct PlannerTests {
    func observed(
        _ cluster: FpindexCluster, children: [ChildRole: Kubernetes.JSONValue]? = nil, pods: [String] = [],
        stream: StreamInfo? = Fixtures.streamInfo(), consumers: [ConsumerInfo] = []
    ) -> Observed {
        Observed(
            cluster: cluster, children: children ?? Fixtures.children(of: cluster),
            pods: pods.map { Fixtures.pod($0, ready: true) },
            jetStream: .seen(stream: stream, consumers: Dictionary(uniqueKeysWithValues: consumers.map { ($0.name, $0) })))
    }

    func plan(_ cluster: FpindexCluster, _ observed: Observed, expired: Bool = false) -> [Action] {
        Planner.plan(
            model: ClusterModel(cluster), desired: DesiredChildren(cluster), observed: observed, finalizerExpired: expired)
    }

    @Test func convergedClusterNeedsNothing() {
        let cluster = Fixtures.cluster()
        let consumers = [Fixtures.consumer("main-index-0", pending: 0), Fixtures.consumer("main-index-1", pending: 0)]
        #expect(plan(cluster, observed(cluster, pods: ["main-index-0", "main-index-1"], consumers: consumers)).isEmpty)
    }

    @Test func newClusterGetsEverythingStreamAndConsumersFirst() {
        let cluster = Fixtures.cluster(finalizer: false)
        let actions = plan(cluster, observed(cluster, children: [:], stream: nil))
        let labels = actions.map(\.description)
        #expect(labels.first == "addFinalizer")
        let stream = labels.firstIndex(of: "createStream(fpindex)")!
        let consumer = labels.firstIndex(of: "createConsumer(main-index-1)")!
        let set = labels.firstIndex(of: "createChild(statefulSet)")!
        #expect(stream < consumer && consumer < set)
        #expect(actions.filter { if case .createChild = $0 { true } else { false } }.count == ChildRole.allCases.count)
        // Each action carries what apply writes: the stream's settings, the replica's consumer,
        // the child's encoded object.
        #expect(actions[stream] == .ensureStream(DesiredChildren(cluster).stream, exists: false))
        #expect(
            actions[consumer]
                == .createConsumer(ReplicaConsumer.config(name: "main-index-1", subjectPrefix: "fpindex", batch: ClusterModel(cluster).batchSize)))
        #expect(actions[set] == .createChild(.statefulSet, object: try! JSONValue(encoding: DesiredChildren(cluster).statefulSet)))
    }

    /// Scale 2 -> 3 -> 1: the new consumer exists before the StatefulSet grows; consumers of
    /// scaled-away replicas stay until their pods are gone.
    @Test func scalingUpAndDown() {
        let two = Fixtures.cluster(replicas: 2)
        let three = Fixtures.cluster(replicas: 3)
        let consumers2 = [Fixtures.consumer("main-index-0", pending: 0), Fixtures.consumer("main-index-1", pending: 0)]
        let up = plan(three, observed(three, children: Fixtures.children(of: two), consumers: consumers2))
        #expect(up.map(\.description) == ["createConsumer(main-index-2)", "patchChild(statefulSet, replicas 2 -> 3)"])

        let one = Fixtures.cluster(replicas: 1)
        let consumers3 = consumers2 + [Fixtures.consumer("main-index-2", pending: 0)]
        let shrinking = plan(
            one,
            observed(
                one, children: Fixtures.children(of: three), pods: ["main-index-0", "main-index-1", "main-index-2"],
                consumers: consumers3))
        #expect(shrinking.map(\.description) == ["patchChild(statefulSet, replicas 3 -> 1)"])
        let podsGone = plan(one, observed(one, pods: ["main-index-0", "main-index-1"], consumers: consumers3))
        #expect(podsGone == [.deleteConsumer("main-index-2")])
    }

    @Test func driftIsRepaired() {
        let cluster = Fixtures.cluster()
        let children = Fixtures.children(of: cluster) { role, json in
            if role == .proxyDeployment { json["spec"]?["replicas"] = .integer(0) }
            // Fields the server or other writers add are not drift.
            if role == .readService { json["spec"]?["clusterIP"] = .string("10.0.0.7") }
            if role == .statefulSet { json["metadata"]?["labels"]?["team"] = .string("search") }
        }
        let consumers = [
            Fixtures.consumer("main-index-0", pending: 0, maxAckPending: 10),
            Fixtures.consumer("main-index-1", pending: 0, ackFloor: 40, filter: "other.>"),
        ]
        let actions = plan(
            cluster, observed(cluster, children: children, stream: Fixtures.streamInfo(replicas: 3), consumers: consumers))
        #expect(
            actions.map(\.description) == [
                "updateStream(fpindex)", "updateConsumer(main-index-0, max_ack_pending)",
                "recreateConsumer(main-index-1, after: 40, filter_subject)", "patchChild(proxyDeployment, replicas 0 -> 2)",
            ])
        let wanted = { (name: String, start: UInt64?) in
            ReplicaConsumer.config(name: name, subjectPrefix: "fpindex", batch: ClusterModel(cluster).batchSize, startSequence: start)
        }
        // The repaired consumer keeps what it had and takes the wanted updatable fields; the
        // recreated one delivers from just after the old ack floor.
        if case .updateConsumer(let config, _) = actions[1] {
            #expect(config.maxAckPending == wanted("main-index-0", nil).maxAckPending)
            #expect(config.filterSubject == consumers[0].config.filterSubject)
        } else {
            Issue.record("expected an in-place update, got \(actions[1])")
        }
        #expect(actions[2] == .recreateConsumer(wanted("main-index-1", 41), resumeAfter: 40, fields: ["filter_subject"]))
    }

    /// A replica's consumer made ephemeral (its configuration replaced through the ephemeral
    /// create subject) is created again under its durable name, in place.
    @Test func aConsumerMadeEphemeralIsMadeDurableAgain() {
        let cluster = Fixtures.cluster(replicas: 1)
        let consumers = [Fixtures.consumer("main-index-0", pending: 3, ackFloor: 12, durable: false)]
        #expect(!consumers[0].isDurable)
        #expect(consumers[0].config.durableName == "main-index-0")
        let actions = plan(cluster, observed(cluster, children: Fixtures.children(of: cluster), consumers: consumers))
        #expect(actions.map(\.description).contains("updateConsumer(main-index-0, durable_name)"))
        let durable = plan(
            cluster, observed(cluster, children: Fixtures.children(of: cluster), consumers: [Fixtures.consumer("main-index-0", pending: 3)]))
        #expect(!durable.contains { $0.description.hasPrefix("updateConsumer") })
    }

    @Test(arguments: [(nil as String?, false), ("Delete", true)])
    func deletionReleasesJetStream(policy: String?, deletesStream: Bool) {
        let cluster = Fixtures.cluster(deletionPolicy: policy, deleting: true)
        let consumers = [Fixtures.consumer("main-index-0", pending: 0), Fixtures.consumer("someone-else", pending: 0)]
        let actions = plan(cluster, observed(cluster, consumers: consumers))
        #expect(
            actions == [
                .cleanUpJetStream(consumers: ["main-index-0"], deleteStream: deletesStream),
                .removeFinalizer(.jetStreamReleased),
            ])
    }

    @Test func deletionWithNATSDownIsBounded() {
        let cluster = Fixtures.cluster(deleting: true)
        let down = Observed(cluster: cluster, children: [:], pods: [], jetStream: .unavailable("connection refused"))
        #expect(plan(cluster, down).isEmpty)
        let released = plan(cluster, down, expired: true)
        #expect(released == [.removeFinalizer(.natsUnreachable)])
    }

    /// Consumers come before pods: with NATS unreachable the StatefulSet is neither created
    /// nor grown (other children are still kept).
    @Test func noStatefulSetGrowthWithoutJetStream() {
        let two = Fixtures.cluster(replicas: 2)
        let three = Fixtures.cluster(replicas: 3)
        let down = Observed(
            cluster: three, children: Fixtures.children(of: two), pods: [], jetStream: .unavailable("refused"))
        #expect(plan(three, down).isEmpty)
        let fresh = Observed(cluster: two, children: [:], pods: [], jetStream: .unavailable("refused"))
        let actions = plan(two, fresh)
        #expect(!actions.map(\.description).contains("createChild(statefulSet)"))
        #expect(actions.map(\.description).contains("createChild(proxyDeployment)"))
        let one = Fixtures.cluster(replicas: 1)
        let shrink = Observed(cluster: one, children: Fixtures.children(of: two), pods: [], jetStream: .unavailable("x"))
        #expect(plan(one, shrink).map(\.description) == ["patchChild(statefulSet, replicas 2 -> 1)"])
    }

    @Test func pausedChangesNothing() {
        let cluster = Fixtures.cluster(paused: true)
        #expect(plan(cluster, observed(cluster, children: [:], stream: nil)).isEmpty)
    }

    @Test func foreignChildrenAreLeftAlone() {
        let cluster = Fixtures.cluster()
        var children = Fixtures.children(of: cluster)
        children[.proxyService] = nil
        let observed = Observed(
            cluster: cluster, children: children, foreign: [.proxyService], pods: [],
            jetStream: .seen(
                stream: Fixtures.streamInfo(),
                consumers: [
                    "main-index-0": Fixtures.consumer("main-index-0", pending: 0),
                    "main-index-1": Fixtures.consumer("main-index-1", pending: 0),
                ]))
        #expect(plan(cluster, observed).isEmpty)
    }
}
