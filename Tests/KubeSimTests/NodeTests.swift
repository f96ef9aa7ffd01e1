import Foundation
import Testing

@testable import KubeSim

/// The pure parts of kubesim's node: what a container runs with, probes, Service records.
@Suite struct NodeTests {
    static let imageMap = ImageMap(
        entries: [
            .init(repository: "fpindex-cluster", path: ["/usr/bin"], entrypoint: []),
            .init(repository: "ghcr.io/acoustid/acoustid-index", path: [], entrypoint: ["/bin/sh", "-c", "serve $(PORT_http)"]),
        ], source: "test.json")

    static func pod(_ containers: String, extra: String = "") throws -> JSONValue {
        try JSONValue.parse(
            """
            {"metadata": {"name": "main-index-0", "namespace": "fp", "uid": "u-1", "labels": {"app": "x"}},
             "spec": {"nodeName": "node-a", "containers": [\(containers)] \(extra)}}
            """)
    }

    static func context(_ pod: JSONValue, secrets: [String: JSONValue] = [:], configMaps: [String: JSONValue] = [:]) -> PodContext {
        PodContext(
            pod: pod, podIP: "10.244.0.7", hostIP: "10.244.0.1", kubernetesServiceHost: "10.96.0.1", secrets: secrets,
            configMaps: configMaps, volumes: ["data": "/var/lib/kubesim/data", "tmp": "/tmp/kubesim/tmp"], imageMap: imageMap)
    }

    @Test func environmentFromFieldsSecretsConfigMapsAndEarlierVariables() throws {
        let pod = try Self.pod(
            #"""
            {"name": "updater", "image": "fpindex-cluster:v2", "command": ["true"], "args": ["--name", "$(CONSUMER_NAME)", "$$(KEEP)"],
             "env": [
               {"name": "CONSUMER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
               {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
               {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
               {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
               {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
               {"name": "URL", "value": "http://$(IP):8080/$(UNKNOWN)"}
             ],
             "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
             "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "idx"}, {"name": "tmp", "mountPath": "/tmp", "readOnly": true}]}
            """#)
        let secret = try JSONValue.parse(#"{"data": {"token": "czNjcjN0"}}"#)
        let settings = try JSONValue.parse(#"{"data": {"mode": "fast"}}"#)
        let result = ContainerSpecs.launch(
            pod.value(at: ["spec", "containers"])!.arrayValue![0],
            in: Self.context(pod, secrets: ["creds": secret], configMaps: ["settings": settings]))
        let launch = try result.get()
        #expect(launch.argv == ["/usr/bin/true", "--name", "main-index-0", "$(KEEP)"])
        #expect(launch.environment["CONSUMER_NAME"] == "main-index-0")
        #expect(launch.environment["APP"] == "x")
        #expect(launch.environment["TOKEN"] == "s3cr3t")
        #expect(launch.environment["MODE"] == "fast")
        #expect(launch.environment["CFG_mode"] == "fast")
        #expect(launch.environment["URL"] == "http://10.244.0.7:8080/$(UNKNOWN)")
        #expect(launch.environment["KUBERNETES_SERVICE_HOST"] == "10.96.0.1")
        #expect(
            launch.mounts == [
                .init(source: "/var/lib/kubesim/data/idx", target: "/data", readOnly: false),
                .init(source: "/tmp/kubesim/tmp", target: "/tmp", readOnly: true),
            ])
    }

    @Test func missingSecretsUnknownImagesAndEscapingSubPathsAreClearErrors() throws {
        let missingSecret = try Self.pod(
            #"{"name": "a", "image": "fpindex-cluster", "command": ["true"], "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}"#
        )
        let error = ContainerSpecs.launch(missingSecret.value(at: ["spec", "containers"])!.arrayValue![0], in: Self.context(missingSecret))
        #expect(throws: ContainerStartError.self) { try error.get() }
        if case .failure(let problem) = error {
            #expect(problem.reason == "CreateContainerConfigError")
            #expect(problem.message == "secret \"nope\" not found")
        }
        let optional = try Self.pod(
            #"{"name": "a", "image": "fpindex-cluster", "command": ["true"], "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}}]}"#
        )
        let launched = try ContainerSpecs.launch(optional.value(at: ["spec", "containers"])!.arrayValue![0], in: Self.context(optional))
            .get()
        #expect(launched.environment["X"] == nil)

        let unknown = try Self.pod(#"{"name": "a", "image": "docker.io/library/redis:7"}"#)
        if case .failure(let problem) = ContainerSpecs.launch(
            unknown.value(at: ["spec", "containers"])!.arrayValue![0], in: Self.context(unknown))
        {
            #expect(problem.reason == "ErrImageNeverPull")
            #expect(problem.message.contains("docker.io/library/redis:7"))
        } else {
            Issue.record("an unmapped image started")
        }
        let escaping = try Self.pod(
            #"{"name": "a", "image": "fpindex-cluster", "command": ["true"], "volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "../../etc"}]}"#
        )
        if case .success = ContainerSpecs.launch(escaping.value(at: ["spec", "containers"])!.arrayValue![0], in: Self.context(escaping)) {
            Issue.record("a subPath with .. was accepted")
        }
    }

    @Test func imageEntrypointsPortsAndRepositories() throws {
        #expect(ImageMap.repository(of: "ghcr.io/acoustid/acoustid-index:main") == "ghcr.io/acoustid/acoustid-index")
        #expect(ImageMap.repository(of: "localhost:5000/fpindex-cluster") == "localhost:5000/fpindex-cluster")
        #expect(ImageMap.repository(of: "nats@sha256:abc") == "nats")
        let pod = try Self.pod(
            #"{"name": "fpindex", "image": "ghcr.io/acoustid/acoustid-index:main", "args": ["--verbose"], "ports": [{"name": "http", "containerPort": 6081}]}"#
        )
        let launch = try ContainerSpecs.launch(pod.value(at: ["spec", "containers"])!.arrayValue![0], in: Self.context(pod)).get()
        #expect(launch.argv == ["/bin/sh", "-c", "serve 6081", "--verbose"])
    }

    /// As a container runtime treats an image config: `command` replaces the entrypoint and
    /// drops cmd, `args` replace cmd; the image's programs, user and working directory apply.
    @Test func imagesRunAsAContainerRuntimeRunsThem() throws {
        let map = ImageMap(
            entries: [
                .init(repository: "tool", path: ["/usr/bin"], entrypoint: ["/bin/sh", "-e"], cmd: ["-c", "true"]),
                .init(
                    repository: "ghcr.io/acoustid/acoustid-index", path: [], entrypoint: [],
                    cmd: ["fpindex", "--dir", "/var/lib/fpindex", "--port", "8080"], programs: ["fpindex": "/bin/cat"],
                    user: 6081, workingDir: "/var/lib/fpindex"),
            ], source: "test.json")
        func argv(_ image: String, command: [String]?, args: [String]?) throws -> [String] {
            try map.commandLine(image: image, command: command, args: args, ports: [:], searchPath: nil).get()
        }
        #expect(try argv("tool", command: nil, args: nil) == ["/bin/sh", "-e", "-c", "true"])
        #expect(try argv("tool", command: nil, args: ["-c", "exit 3"]) == ["/bin/sh", "-e", "-c", "exit 3"])
        #expect(try argv("tool", command: ["true"], args: nil) == ["/usr/bin/true"])
        #expect(try argv("tool", command: ["true"], args: ["x"]) == ["/usr/bin/true", "x"])
        // The published fpindex image: no entrypoint, its CMD names the program `fpindex`.
        #expect(
            try argv("ghcr.io/acoustid/acoustid-index:main", command: nil, args: nil)
                == ["/bin/cat", "--dir", "/var/lib/fpindex", "--port", "8080"])
        #expect(
            try argv("ghcr.io/acoustid/acoustid-index:main", command: ["fpindex", "--dir", "/data"], args: ["--port", "6081"])
                == ["/bin/cat", "--dir", "/data", "--port", "6081"])
        // args alone replace the whole CMD: the first becomes the program (as on a real node).
        let argsOnly = map.commandLine(
            image: "ghcr.io/acoustid/acoustid-index", command: nil, args: ["--port", "6081"], ports: [:], searchPath: nil)
        #expect(throws: ContainerStartError.self) { try argsOnly.get() }

        let pod = try Self.pod(#"{"name": "fpindex", "image": "ghcr.io/acoustid/acoustid-index:main"}"#)
        let context = PodContext(
            pod: pod, podIP: "10.244.0.7", hostIP: "10.244.0.1", kubernetesServiceHost: "10.96.0.1", secrets: [:],
            configMaps: [:], volumes: [:], imageMap: map)
        let launch = try ContainerSpecs.launch(pod.value(at: ["spec", "containers"])!.arrayValue![0], in: context).get()
        #expect(launch.user?.uid == 6081)
        #expect(launch.workingDirectory == "/var/lib/fpindex")
        // The pod's own user wins over the image's.
        let asPod = try Self.pod(
            #"{"name": "fpindex", "image": "ghcr.io/acoustid/acoustid-index:main"}"#, extra: #", "securityContext": {"runAsUser": 65532}"#)
        #expect(ContainerSpecs.user(asPod.value(at: ["spec", "containers"])!.arrayValue![0], asPod, imageUser: 6081)?.uid == 65532)
    }

    @Test func anImageMapWithAMissingProgramIsRefusedAtLoad() throws {
        let directory = NSTemporaryDirectory() + "image-map-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/images.json"
        try #"{"images": [{"repository": "ghcr.io/acoustid/acoustid-index", "cmd": ["fpindex"], "programs": {"fpindex": "bin/fpindex"}}]}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let error = #expect(throws: KubeSimSetupError.self) { try ImageMap.load(path: path) }
        #expect(error?.message.contains("ghcr.io/acoustid/acoustid-index") == true)
        #expect(error?.message.contains(directory + "/bin/fpindex") == true)
    }

    @Test func usersFromSecurityContextsAndTheirScript() throws {
        let pod = try Self.pod(
            #"{"name": "a", "image": "fpindex-cluster", "command": ["true"], "securityContext": {"runAsUser": 1000}}"#,
            extra: #", "securityContext": {"runAsUser": 65532, "fsGroup": 2000, "runAsNonRoot": true}"#)
        let container = pod.value(at: ["spec", "containers"])!.arrayValue![0]
        let user = try #require(ContainerSpecs.user(container, pod))
        #expect(user.uid == 1000 && user.gid == 1000 && user.groups == [2000])
        let nonRoot = try Self.pod(#"{"name": "a", "image": "x"}"#, extra: #", "securityContext": {"runAsNonRoot": true}"#)
        #expect(ContainerSpecs.user(nonRoot.value(at: ["spec", "containers"])!.arrayValue![0], nonRoot)?.uid == 65534)
        #expect(
            ContainerSpecs.user(
                try Self.pod(#"{"name": "a"}"#).value(at: ["spec", "containers"])!.arrayValue![0], try Self.pod(#"{"name": "a"}"#)) == nil)

        let launch = ContainerLaunch(
            argv: ["/bin/prog"], environment: [:],
            mounts: [.init(source: "/v/it's", target: "/data", readOnly: true)], workingDirectory: "/data",
            user: (uid: 1000, gid: 1000, groups: [2000]))
        let script = launch.script(setpriv: "/usr/bin/setpriv", stage: "/run/stage")
        let lines = script.split(separator: "\n").map(String.init)
        #expect(lines.contains("mkdir '/run/stage/0' && mount --bind '/v/it'\\''s' '/run/stage/0'"))
        #expect(lines.contains("mkdir '/run/stage/bin' && mount --bind '/bin' '/run/stage/bin'"))
        #expect(lines.contains("mount --bind '/run/stage/0' '/data'"))
        #expect(lines.contains("mount -o remount,bind,ro '/data'"))
        #expect(lines.contains("cd '/data'"))
        #expect(lines.last == "exec '/usr/bin/setpriv' --reuid 1000 --regid 1000 --groups 1000,2000 -- '/run/stage/bin/prog' \"$@\"")
        // Staging comes before any mount at a target.
        #expect(
            lines.firstIndex { $0.contains("mount --bind '/run/stage/0' '/data'") }! > lines.firstIndex { $0.contains("/run/stage/bin'") }!)
        let plain = ContainerLaunch(argv: ["/bin/prog"], environment: [:], mounts: [], workingDirectory: nil, user: nil)
        #expect(
            plain.script(setpriv: "/usr/bin/setpriv")
                == "set -e\npod_path=\"${PATH-}\"\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\nPATH=\"$pod_path\"; export PATH\nexec \"$0\" \"$@\"")
    }

    @Test func programsInPrivateFoldersAreOutOfAUsersReach() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kubesim-private-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let program = folder + "/prog"
        #expect(FileManager.default.createFile(atPath: program, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755]))
        let nobody = (uid: 65532, gid: 65532, groups: [Int]())
        #expect(!ContainerSpecs.executable(program, by: nobody))
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder)
        #expect(ContainerSpecs.executable(program, by: nobody))
        try FileManager.default.setAttributes([.posixPermissions: 0o744], ofItemAtPath: program)
        #expect(!ContainerSpecs.executable(program, by: nobody))
        #expect(ContainerSpecs.executable("/bin/sh", by: nobody))
    }

    @Test func mountsThatWouldHideOtherSourcesGoLast() {
        let tmp = ContainerLaunch.Mount(source: "/tmp/state/pods/p/volumes/tmp", target: "/tmp", readOnly: false)
        let token = ContainerLaunch.Mount(
            source: "/tmp/state/pods/p/volumes/kube-api-access", target: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true)
        let data = ContainerLaunch.Mount(source: "/srv/data", target: "/data", readOnly: false)
        let nested = ContainerLaunch.Mount(source: "/srv/cache", target: "/data/cache", readOnly: false)
        let ordered = ContainerLaunch.mountOrder([nested, tmp, data, token])
        let position = { (mount: ContainerLaunch.Mount) in ordered.firstIndex(of: mount)! }
        #expect(position(token) < position(tmp))
        #expect(position(data) < position(nested))
        #expect(ordered.count == 4)
    }

    @Test func probesAsTheKubeletReadsThem() throws {
        let container = try JSONValue.parse(#"{"ports": [{"name": "probes", "containerPort": 8091}]}"#)
        let http = ProbeSpec(
            try JSONValue.parse(#"{"httpGet": {"path": "ready", "port": "probes"}, "periodSeconds": 2, "failureThreshold": 1}"#),
            container: container)
        #expect(http.action == .http(path: "/ready", port: 8091, https: false, headers: [:]))
        #expect(http.period == .seconds(2) && http.failureThreshold == 1 && http.timeout == .seconds(1) && http.successThreshold == 1)
        let tcp = ProbeSpec(try JSONValue.parse(#"{"tcpSocket": {"port": 4222}}"#), container: container)
        #expect(tcp.action == .tcp(port: 4222) && tcp.period == .seconds(10) && tcp.failureThreshold == 3)
        let exec = ProbeSpec(try JSONValue.parse(#"{"exec": {"command": ["cat", "/tmp/ok"]}}"#), container: container)
        #expect(exec.action == .exec(["cat", "/tmp/ok"]))
        let badPort = ProbeSpec(try JSONValue.parse(#"{"httpGet": {"path": "/", "port": "nope"}}"#), container: container)
        if case .unsupported = badPort.action {} else { Issue.record("a probe on an unknown named port was accepted") }
    }

    static let service = try! JSONValue.parse(
        #"""
        {"metadata": {"name": "main-index-read", "namespace": "fp", "uid": "s-1"},
         "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "x"}, "ports": [{"name": "http", "port": 6081, "targetPort": "http"}]}}
        """#)

    static func indexPod(_ name: String, ip: String, ready: Bool, deleting: Bool = false) throws -> JSONValue {
        try JSONValue.parse(
            """
            {"metadata": {"name": "\(name)", "namespace": "fp", "uid": "\(name)-uid" \(deleting ? #", "deletionTimestamp": "2026-01-01T00:00:00Z""# : "")},
             "spec": {"nodeName": "n", "hostname": "\(name)", "subdomain": "main-index",
                      "containers": [{"name": "fpindex", "ports": [{"name": "http", "containerPort": 7000}]}]},
             "status": {"podIP": "\(ip)", "conditions": [{"type": "Ready", "status": "\(ready ? "True" : "False")"}]}}
            """)
    }

    @Test func endpointSlicesResolveNamedPortsAndKeepOnlyReadyPodsForTraffic() throws {
        let pods = [
            try Self.indexPod("main-index-0", ip: "10.244.0.5", ready: true),
            try Self.indexPod("main-index-1", ip: "10.244.0.6", ready: false),
            try Self.indexPod("main-index-2", ip: "10.244.0.7", ready: true, deleting: true),
        ]
        let (slice, endpoints) = EndpointBuilder.objects(service: Self.service, pods: pods)
        #expect(slice.value(at: ["metadata", "labels", "kubernetes.io/service-name"])?.stringValue == "main-index-read")
        #expect(slice["ports"]?.arrayValue?.first?["port"]?.intValue == 7000)
        let conditions = (slice["endpoints"]?.arrayValue ?? []).map { $0["conditions"] ?? .null }
        #expect(conditions.map { $0["ready"]?.boolValue } == [true, false, false])
        #expect(conditions.map { $0["terminating"]?.boolValue } == [false, false, true])
        #expect(
            EndpointBuilder.backends(port: Self.service.value(at: ["spec", "ports"])!.arrayValue![0], slices: [slice]) == [
                .init(host: "10.244.0.5", port: 7000)
            ])
        let subset = endpoints["subsets"]?.arrayValue?.first
        #expect(subset?["addresses"]?.arrayValue?.count == 1)
        #expect(subset?["notReadyAddresses"]?.arrayValue?.count == 1)
        #expect(EndpointBuilder.sliceName(Self.service) == EndpointBuilder.sliceName(Self.service))
        #expect(EndpointBuilder.sliceName(Self.service).hasPrefix("main-index-read-"))
    }

    @Test func hostsFilesNameServicesHeadlessEndpointsAndStatefulPods() throws {
        var headless = try JSONValue.parse(
            #"{"metadata": {"name": "main-index", "namespace": "fp", "uid": "h-1"}, "spec": {"clusterIP": "None", "selector": {"app": "x"}, "ports": [{"name": "http", "port": 6081}]}}"#
        )
        headless.setValue("None", at: ["spec", "clusterIP"])
        let nats = try JSONValue.parse(
            #"{"metadata": {"name": "nats", "namespace": "other", "uid": "n-1"}, "spec": {"clusterIP": "10.96.0.30"}}"#)
        let pods = [
            try Self.indexPod("main-index-0", ip: "10.244.0.5", ready: true),
            try Self.indexPod("main-index-1", ip: "10.244.0.6", ready: false),
        ]
        let (slice, _) = EndpointBuilder.objects(service: headless, pods: pods)
        let snapshot = DNSSnapshot(services: [Self.service, headless, nats], slices: [slice], pods: pods)
        let hosts = snapshot.hostsFile(for: pods[0], address: "10.244.0.5")
        let lines = hosts.split(separator: "\n").map(String.init)
        #expect(
            lines.contains("10.96.0.20\tmain-index-read.fp.svc.cluster.local main-index-read.fp.svc main-index-read.fp main-index-read"))
        #expect(lines.contains("10.96.0.30\tnats.other.svc.cluster.local nats.other.svc nats.other"))
        #expect(lines.contains("10.244.0.5\tmain-index.fp.svc.cluster.local main-index.fp.svc main-index.fp main-index"))
        #expect(!lines.contains { $0.hasPrefix("10.244.0.6\tmain-index.fp") }, "a not-ready pod behind the headless name")
        #expect(
            lines.contains(
                "10.244.0.6\tmain-index-1.main-index.fp.svc.cluster.local main-index-1.main-index.fp.svc main-index-1.main-index.fp main-index-1.main-index"
            ))
        #expect(lines.contains("10.244.0.5\tmain-index-0.main-index.fp.svc.cluster.local main-index-0"))
    }

    @Test(arguments: [
        ("a\nb\nc\n", 2, "b\nc\n"), ("a\nb\nc", 1, "c"), ("a\nb\n", 5, "a\nb\n"), ("a\nb\n", 0, ""),
    ])
    func tailLines(_ text: String, _ count: Int, _ expected: String) {
        #expect(String(decoding: KubeSimResponder.lastLines(Data(text.utf8), count), as: UTF8.self) == expected)
    }
}
