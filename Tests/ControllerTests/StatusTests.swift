import Controller
import Foundation
import JetStream
import Kubernetes
import Testing

@Suite("Status")
struct StatusTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func status(
        _ cluster: FpindexCluster, pending: [UInt64], ready: [Bool], proxies: Int = 1, ackFloor: UInt64 = 10,
        at date: Date? = nil
    ) -> FpindexCluster.ClusterStatus {
        var children = Fixtures.children(of: cluster)
        Fixtures.proxyAvailable(&children, available: proxies)
        let consumers = pending.enumerated().map {
            Fixtures.consumer("main-index-\($0.offset)", pending: $0.element, ackFloor: ackFloor)
        }
        let observed = Observed(
            cluster: cluster, children: children,
            pods: ready.enumerated().map { Fixtures.pod("main-index-\($0.offset)", ready: $0.element) },
            jetStream: .seen(
                stream: Fixtures.streamInfo(), consumers: Dictionary(uniqueKeysWithValues: consumers.map { ($0.name, $0) })))
        return StatusCalculator.compute(
            model: ClusterModel(cluster), observed: observed, outcome: ApplyOutcome(), specProblems: [],
            now: date ?? now)
    }

    func condition(_ status: FpindexCluster.ClusterStatus, _ type: String) -> Condition? {
        status.conditions?.first { $0.type == type }
    }

    @Test func laggingReplicaKeepsTheClusterNotReady() {
        let cluster = Fixtures.cluster(replicas: 2, maxLag: 100)
        let result = status(cluster, pending: [0, 5000], ready: [true, false])
        #expect(result.maxLag == 5000)
        #expect(result.readyReplicas == 1)
        #expect(result.replicas == 2)
        #expect(result.selector == "app.kubernetes.io/instance=main,app.kubernetes.io/component=index")
        #expect(condition(result, "ReplicasCaughtUp")?.status == "False")
        #expect(condition(result, "Ready")?.status == "False")
        #expect(condition(result, "Ready")?.reason == "Lagging")
        #expect(condition(result, "StreamReady")?.status == "True")
        #expect(result.conditions?.map(\.type) == StatusCalculator.conditionTypes)
        #expect(result.conditions?.allSatisfy { $0.observedGeneration == 3 } == true)
        #expect(result.replicaStatus?.map(\.caughtUp) == [true, false])
        #expect(result.stream?.lastSeq == 500)
    }

    @Test func caughtUpAndReadyIsReady() {
        let result = status(Fixtures.cluster(replicas: 2, maxLag: 100), pending: [3, 0], ready: [true, true])
        #expect(condition(result, "Ready")?.status == "True")
        #expect(condition(result, "Ready")?.reason == "Ready")
        #expect(condition(result, "Progressing")?.status == "False")
        #expect(condition(result, "Stalled")?.status == "False")
    }

    @Test func noProxyMeansNotReady() {
        let result = status(Fixtures.cluster(), pending: [0, 0], ready: [true, true], proxies: 0)
        #expect(condition(result, "ProxyAvailable")?.status == "False")
        #expect(condition(result, "Ready")?.reason == "ProxyUnavailable")
    }

    /// A caught-up replica stays caught up until its lag passes twice the threshold.
    @Test func hysteresis() {
        var cluster = Fixtures.cluster(replicas: 1, maxLag: 100)
        let first = status(cluster, pending: [50], ready: [true])
        #expect(first.replicaStatus?.first?.caughtUp == true)
        cluster.status = first
        #expect(status(cluster, pending: [150], ready: [true]).replicaStatus?.first?.caughtUp == true)
        #expect(status(cluster, pending: [250], ready: [true]).replicaStatus?.first?.caughtUp == false)
        cluster.status = nil
        #expect(status(cluster, pending: [150], ready: [true]).replicaStatus?.first?.caughtUp == false)
    }

    /// lastTransitionTime moves only on a flip; Stalled after no progress for the stall window.
    @Test func transitionTimesAndStall() {
        var cluster = Fixtures.cluster(replicas: 1, maxLag: 100)
        let first = status(cluster, pending: [5000], ready: [false])
        cluster.status = first
        let later = status(cluster, pending: [4000], ready: [false], at: now + 60)
        #expect(condition(later, "Ready")?.lastTransitionTime == condition(first, "Ready")?.lastTransitionTime)
        #expect(condition(later, "Stalled")?.status == "False")
        cluster.status = later
        let stuck = status(cluster, pending: [4000], ready: [false], at: now + 600)
        #expect(condition(stuck, "Stalled")?.status == "True")
        cluster.status = stuck
        let caughtUp = status(cluster, pending: [0], ready: [true], ackFloor: 5000, at: now + 700)
        #expect(condition(caughtUp, "Ready")?.status == "True")
        #expect(condition(caughtUp, "Ready")?.lastTransitionTime == KubernetesTime.format(now + 700))
        #expect(condition(caughtUp, "Stalled")?.status == "False")
    }

    @Test func natsDownIsUnknownNotLagging() {
        var cluster = Fixtures.cluster()
        cluster.status = status(cluster, pending: [0, 0], ready: [true, true])
        let observed = Observed(
            cluster: cluster, children: Fixtures.children(of: cluster), pods: [], jetStream: .unavailable("refused"))
        let result = StatusCalculator.compute(
            model: ClusterModel(cluster), observed: observed, outcome: ApplyOutcome(), specProblems: [], now: now)
        #expect(condition(result, "StreamReady")?.reason == "NATSUnavailable")
        #expect(condition(result, "ReplicasCaughtUp")?.status == "Unknown")
        #expect(condition(result, "Ready")?.status == "False")
        #expect(result.replicaStatus?.count == 2)  // The last known progress is kept.
    }

    @Test func rejectedStreamChangeNamesTheField() {
        let cluster = Fixtures.cluster()
        let observed = Observed(
            cluster: cluster, children: Fixtures.children(of: cluster), pods: [],
            jetStream: .seen(stream: Fixtures.streamInfo(), consumers: [:]))
        let result = StatusCalculator.compute(
            model: ClusterModel(cluster), observed: observed,
            outcome: ApplyOutcome(streamError: "stream fpindex has storage file and JetStream cannot change it"),
            specProblems: [], now: now)
        #expect(condition(result, "StreamReady")?.reason == "StreamConfigRejected")
        #expect(condition(result, "StreamReady")?.message.contains("storage") == true)
    }
}

@Suite("Work queue")
struct WorkQueueTests {
    @Test func dedupesAndRequeuesDirtyKeys() async {
        let queue = WorkQueue()
        let a = ObjectKey(namespace: "n", name: "a")
        let b = ObjectKey(namespace: "n", name: "b")
        await queue.add(a)
        await queue.add(a)
        await queue.add(b)
        #expect(await queue.depth == 2)
        let first = await queue.get()
        #expect(first == a)
        await queue.add(a)  // while processing: comes back after done
        #expect(await queue.get() == b)
        await queue.done(a)
        #expect(await queue.get() == a)
        await queue.done(a)
        await queue.done(b)
        #expect(await queue.depth == 0)
    }

    @Test func backoffGrowsPerKeyAndForgetResets() async throws {
        let queue = WorkQueue(baseDelay: .milliseconds(20), maxDelay: .seconds(1))
        let key = ObjectKey(namespace: "n", name: "a")
        let timers = Task { await queue.runTimers(tick: .milliseconds(5)) }
        defer { timers.cancel() }
        for expected in 1...3 {
            await queue.addRateLimited(key)
            #expect(await queue.failureCount(key) == expected)
            let got = await queue.get()
            #expect(got == key)
            await queue.done(key)
        }
        await queue.forget(key)
        #expect(await queue.failureCount(key) == 0)
        await queue.shutDown()
        #expect(await queue.get() == nil)
    }
}
