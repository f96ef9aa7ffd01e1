import Testing

@testable import KubeSim

/// The pure parts: JSON, JSONPath, selectors, patches, durations.
@Suite struct PureFunctionTests {
    static let object: JSONValue = try! JSONValue.parse(
        #"""
        {"metadata":{"name":"main","labels":{"app":"x","tier":"db"}},
         "status":{"conditions":[{"type":"Progressing","reason":"Scaling"},{"type":"Ready","reason":"AllCaughtUp","status":"True"}],
                   "replicas":3,"list":[1,2,3],"quoted":"a\"b\n"}}
        """#)

    @Test(
        arguments: [
            (".metadata.name", ["main"]),
            (".status.conditions[?(@.type==\"Ready\")].reason", ["AllCaughtUp"]),
            (".status.conditions[?(@.type!=\"Ready\")].reason", ["Scaling"]),
            (".status.conditions[*].type", ["Progressing", "Ready"]),
            (".status.conditions[1].status", ["True"]),
            (".status.conditions[-1].type", ["Ready"]),
            ("{.metadata.labels['app']}", ["x"]),
            (".status.missing", []),
        ] as [(String, [String])])
    func jsonPath(path: String, expected: [String]) {
        #expect(JSONPath.evaluate(path, on: Self.object).map { Schema.describe($0) } == expected)
    }

    @Test func jsonRoundTrip() throws {
        let text = Self.object.serialized()
        #expect(try JSONValue.parse(text) == Self.object)
        #expect(
            try JSONValue.parse(#"{"a":1.5,"b":-2,"c":[true,null],"d":"\u00e9\ud83d\ude00"}"#).serialized()
                == #"{"a":1.5,"b":-2,"c":[true,null],"d":"é😀"}"#)
        #expect(throws: JSONParseError.self) { try JSONValue.parse("{\"a\":}") }
    }

    @Test(
        arguments: [
            ("app=x", true), ("app==x,tier=db", true), ("app!=x", false), ("app in (y, x)", true), ("tier notin (db)", false),
            ("app", true), ("!app", false), ("!missing", true), ("missing", false),
        ] as [(String, Bool)])
    func labelSelector(selector: String, matches: Bool) throws {
        #expect(try LabelSelector(parsing: selector).matches(object: Self.object) == matches)
    }

    @Test func mergePatchAndJSONPatch() throws {
        let target: JSONValue = ["a": 1, "b": ["c": 2, "d": 3]]
        #expect(Patch.merge(target, ["b": ["c": .null, "e": 4]]) == ["a": 1, "b": ["d": 3, "e": 4]])
        let patched = try Patch.jsonPatch(
            ["list": [1, 2]],
            [["op": "add", "path": "/list/-", "value": 3], ["op": "move", "from": "/list", "path": "/moved"]])
        #expect(patched == ["moved": [1, 2, 3]])
        #expect(throws: KubeSimError.self) { try Patch.jsonPatch(target, [["op": "remove", "path": "/nope"]]) }
    }

    @Test func strategicMergeDirectives() {
        let target: JSONValue = [
            "metadata": ["finalizers": ["a"]],
            "spec": [
                "containers": [["name": "x", "image": "x:1", "env": [["name": "A", "value": "1"]]], ["name": "y", "image": "y:1"]]
            ],
        ]
        let patch: JSONValue = [
            "metadata": ["finalizers": ["b"]],
            "spec": [
                "containers": [["name": "y", "$patch": "delete"], ["name": "x", "env": [["name": "B", "value": "2"]]]],
                "$setElementOrder/containers": [["name": "x"]],
            ],
        ]
        let result = Patch.strategicMerge(target, patch)
        #expect(result.value(at: ["metadata", "finalizers"]) == ["a", "b"])
        let containers = result.value(at: ["spec", "containers"])?.arrayValue ?? []
        #expect(containers.count == 1)
        #expect(containers.first?["env"] == [["name": "A", "value": "1"], ["name": "B", "value": "2"]])
        #expect(containers.first?["image"] == "x:1")
    }

    @Test(
        arguments: [
            (5.0, "5s"), (119.0, "119s"), (150.0, "2m30s"), (900.0, "15m"), (3.5 * 3600, "3h30m"), (30 * 3600.0, "30h"),
            (3 * 86400.0 + 7200, "3d2h"),
        ] as [(Double, String)])
    func humanDuration(seconds: Double, text: String) {
        #expect(TableRendering.humanDuration(seconds) == text)
    }

    @Test func fieldsV1RoundTrip() {
        let object: JSONValue = ["metadata": ["name": "n", "labels": ["a": "1"]], "data": ["x": "1", "y": "2"]]
        let paths = FieldManagement.leafPaths(object)
        #expect(paths == [["metadata", "labels", "a"], ["data", "x"], ["data", "y"]])
        let encoded = FieldManagement.encode([
            .init(manager: "m", operation: "Apply", apiVersion: "v1", subresource: nil, time: "t", fields: paths)
        ])
        var holder: JSONValue = ["metadata": ["managedFields": encoded]]
        #expect(FieldManagement.decode(holder).first?.fields == paths)
        holder = [:]
        #expect(FieldManagement.decode(holder).isEmpty)
    }
}

/// The workload controllers' pure helpers.
@Suite struct WorkloadHelperTests {
    @Test func templateHashIsStableAndSafe() throws {
        let a = try JSONValue.parse(#"{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"web:1"}]}}"#)
        let b = try JSONValue.parse(#"{"spec":{"containers":[{"image":"web:1","name":"web"}]},"metadata":{"labels":{"app":"web"}}}"#)
        let c = try JSONValue.parse(#"{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"web:2"}]}}"#)
        #expect(Workloads.templateHash(a) == Workloads.templateHash(b))
        #expect(Workloads.templateHash(a) != Workloads.templateHash(c))
        // What kubectl rollout undo sends back: nulls and empty objects do not change the hash.
        let d = try JSONValue.parse(
            #"{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"web:1","resources":{}}]}}"#
        )
        #expect(Workloads.templateHash(a) == Workloads.templateHash(d))
        #expect(Workloads.templateHash(a).allSatisfy { "bcdfghjklmnpqrstvwxz2456789".contains($0) })
    }

    @Test(arguments: [
        (#"{"spec":{"replicas":4}}"#, 1, 1),  // 25% of 4, both ways
        (#"{"spec":{"replicas":3}}"#, 1, 0),  // surge rounds up, unavailable down
        (#"{"spec":{"replicas":3,"strategy":{"rollingUpdate":{"maxSurge":0,"maxUnavailable":0}}}}"#, 0, 1),  // never both 0
        (#"{"spec":{"replicas":10,"strategy":{"rollingUpdate":{"maxSurge":"50%","maxUnavailable":2}}}}"#, 5, 2),
        (#"{"spec":{"replicas":3,"strategy":{"type":"Recreate"}}}"#, 0, 3),
    ])
    func rollingParameters(deployment: String, surge: Int, unavailable: Int) throws {
        let parameters = Workloads.rollingParameters(try JSONValue.parse(deployment))
        #expect(parameters.surge == surge)
        #expect(parameters.unavailable == unavailable)
    }

    @Test func ordinals() {
        #expect(Workloads.ordinal(of: "db-12", set: "db") == 12)
        #expect(Workloads.ordinal(of: "db-x", set: "db") == nil)
        #expect(Workloads.ordinal(of: "dbx-1", set: "db") == nil)
        #expect(Workloads.ordinal(of: "db-web-1", set: "db") == nil)
    }
}

/// The garbage collector's decision for one object, given its owners and dependents.
@Suite struct GarbageCollectorTests {
    static func object(uid: String = "u", owners: [String] = [], deleting: Bool = false, finalizers: [String] = []) -> JSONValue {
        var metadata: [String: JSONValue] = ["uid": .string(uid), "name": "x", "namespace": "ns"]
        if !owners.isEmpty { metadata["ownerReferences"] = .array(owners.map { ["uid": .string($0), "name": "o", "kind": "K"] }) }
        if deleting { metadata["deletionTimestamp"] = "2026-12-05T00:00:00Z" }
        if !finalizers.isEmpty { metadata["finalizers"] = .array(finalizers.map { .string($0) }) }
        return ["metadata": .object(metadata)]
    }

    static func decide(
        _ object: JSONValue, owners: [String: JSONValue] = [:], dependents: Bool = false, namespace: Bool = false,
        members: (live: ObjectRef?, any: Bool)? = nil
    ) -> GarbageCollector.Decision {
        GarbageCollector.decide(
            object, isNamespace: namespace, isTerminatingPod: false, hasDependents: dependents, owner: { owners[$0] },
            members: members)
    }

    @Test func ownersDecideTheFateOfTheirDependents() {
        let live = Self.object(uid: "o")
        #expect(Self.decide(Self.object(owners: ["o"]), owners: ["o": live]) == .nothing)
        // Every owner gone: collected in the background.
        #expect(Self.decide(Self.object(owners: ["o"])) == .delete(policy: "Background"))
        // One of two gone: the reference to it is dropped.
        let kept = Self.object(owners: ["o", "gone"])
        if case .keepOwnerReferences(let references) = Self.decide(kept, owners: ["o": live]) {
            #expect(references.map { $0["uid"]?.stringValue } == ["o"])
        } else {
            Issue.record("expected the live owner's reference kept")
        }
        // The owner is deleted in the foreground: its dependents go first, in the foreground too.
        let foreground = Self.object(uid: "o", deleting: true, finalizers: ["foregroundDeletion"])
        #expect(Self.decide(Self.object(owners: ["o"]), owners: ["o": foreground]) == .delete(policy: "Foreground"))
        // The owner asked to orphan its dependents.
        let orphaning = Self.object(uid: "o", deleting: true, finalizers: ["orphan"])
        #expect(Self.decide(Self.object(owners: ["o"]), owners: ["o": orphaning]) == .orphan)
    }

    @Test func deletionsFinishWhenNothingHoldsThem() {
        #expect(Self.decide(Self.object(deleting: true)) == .remove)
        #expect(Self.decide(Self.object(deleting: true, finalizers: ["example.com/hold"])) == .nothing)
        // Waiting for dependents: only once they are gone.
        let waiting = Self.object(deleting: true, finalizers: ["foregroundDeletion", "example.com/hold"])
        #expect(Self.decide(waiting, dependents: true) == .nothing)
        #expect(Self.decide(waiting) == .releaseDependentFinalizers(left: ["example.com/hold"]))
    }

    @Test func aTerminatingNamespaceIsEmptiedThenRemoved() {
        let namespace = Self.object(deleting: true)
        let member = ObjectRef(storageKey: "/pods", key: "ns/p")
        #expect(Self.decide(namespace, namespace: true, members: (member, true)) == .deleteMember(member))
        #expect(Self.decide(namespace, namespace: true, members: (nil, true)) == .nothing)  // members still terminating
        #expect(Self.decide(namespace, namespace: true, members: (nil, false)) == .removeNamespace)
        #expect(Self.decide(Self.object(), namespace: true) == .nothing)
    }
}

/// The owner index follows every write.
@Suite struct OwnerIndexTests {
    @Test func dependentsFollowTheirOwnerReferences() {
        var index = OwnerIndex()
        let pod = ObjectRef(storageKey: "/pods", key: "ns/p")
        let owned = GarbageCollectorTests.object(uid: "p", owners: ["rs"])
        index.update(pod, old: nil, new: owned)
        #expect(index.dependents(of: "rs") == [pod])
        #expect(index.byUID["p"] == pod)
        index.update(pod, old: owned, new: GarbageCollectorTests.object(uid: "p"))
        #expect(!index.hasDependents("rs"))
        index.update(pod, old: GarbageCollectorTests.object(uid: "p"), new: nil)
        #expect(index.byUID["p"] == nil)
    }
}
