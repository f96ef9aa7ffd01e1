import Foundation

/// Settings of kubesim's pod runner (`kubesim --run-pods`): one node that runs the pods of the
/// cluster as local processes, each pod in its own network namespace on a bridge.
///
/// Needs root (network namespaces, veth pairs, bind mounts) and iproute2.
public struct NodeConfiguration: Sendable {
    /// The node's name (`spec.nodeName` of its pods, the Node object).
    public var nodeName: String
    /// The bridge the pods' veth pairs hang off; also carries the gateway and the service addresses.
    public var bridge: String
    /// The first two octets of the pod network, a /16 (`10.244` -> 10.244.0.0/16, gateway 10.244.0.1).
    public var podSubnet: String
    /// The first two octets of the service network, a /16 (`10.96`; the `kubernetes` Service is x.y.0.1).
    public var serviceSubnet: String
    /// The image map (JSON): which local program runs for which image; see `ImageMap`.
    public var imageMapPath: String
    /// Where container logs, emptyDir and projected volumes live.
    public var stateDirectory: String
    /// Restart back-off: first delay and cap (the kubelet's are 10 s and 5 min; shorter here so
    /// that local runs and tests recover quickly).
    public var restartBackoff: Duration
    public var maxRestartBackoff: Duration

    public init(
        nodeName: String = "kubesim-node", bridge: String = "kubesim0", podSubnet: String = "10.244",
        serviceSubnet: String = "10.96", imageMapPath: String, stateDirectory: String,
        restartBackoff: Duration = .seconds(1), maxRestartBackoff: Duration = .seconds(30)
    ) {
        self.nodeName = nodeName
        self.bridge = bridge
        self.podSubnet = podSubnet
        self.serviceSubnet = serviceSubnet
        self.imageMapPath = imageMapPath
        self.stateDirectory = stateDirectory
        self.restartBackoff = restartBackoff
        self.maxRestartBackoff = maxRestartBackoff
    }

    /// A problem with the settings, for the command line to report (nil: fine).
    public var problem: String? {
        for (flag, subnet) in [("--pod-subnet", podSubnet), ("--service-subnet", serviceSubnet)] {
            let parts = subnet.split(separator: ".", omittingEmptySubsequences: false)
            if parts.count != 2 || parts.contains(where: { UInt8($0) == nil }) {
                return "\(flag) must be the first two octets of a /16, like 10.244 (got '\(subnet)')"
            }
        }
        if podSubnet == serviceSubnet { return "--pod-subnet and --service-subnet must differ" }
        if bridge.isEmpty || bridge.count > 10 || !bridge.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) {
            return "--bridge must be 1-10 letters or digits (network namespaces are named after it)"
        }
        return nil
    }

    var gateway: String { "\(podSubnet).0.1" }
    var kubernetesServiceIP: String { "\(serviceSubnet).0.1" }
}

/// Which local program stands in for an image, described as the image's own configuration
/// (its Dockerfile) describes it. A JSON file:
///
/// ```json
/// {"images": [
///   {"repository": "fpindex-cluster", "path": "../.build/debug"},
///   {"repository": "nats", "path": "../.tools/bin", "entrypoint": ["nats-server"]},
///   {"repository": "ghcr.io/acoustid/acoustid-index", "user": 6081,
///    "cmd": ["fpindex", "--dir", "/var/lib/fpindex", "--host", "0.0.0.0", "--port", "8080"],
///    "programs": {"fpindex": "../.build/debug/fpindex-dev"}}
/// ]}
/// ```
///
/// An image matches an entry when its repository (the image without `:tag` or `@digest`)
/// equals `repository`. As a container runtime does with an image config: a container's
/// `command` replaces `entrypoint` and drops `cmd`; its `args` replace `cmd`. A program name
/// without a `/` is one of `programs` (the stand-ins for the image's own programs), else looked
/// up in `path`, then `PATH`. `user` (a uid) and `workingDir` apply unless the pod sets its
/// own. Relative paths in the file are relative to the file's folder. `$(PORT_<name>)` in the
/// entrypoint or cmd is the container port of that name.
public struct ImageMap: Sendable {
    public struct Entry: Sendable {
        public var repository: String
        public var path: [String]
        public var entrypoint: [String]
        public var cmd: [String]
        /// Program name -> local program standing in for it.
        public var programs: [String: String]
        /// The image's `USER` (numeric).
        public var user: Int?
        /// The image's `WORKDIR`.
        public var workingDir: String?

        public init(
            repository: String, path: [String], entrypoint: [String], cmd: [String] = [], programs: [String: String] = [:],
            user: Int? = nil, workingDir: String? = nil
        ) {
            self.repository = repository
            self.path = path
            self.entrypoint = entrypoint
            self.cmd = cmd
            self.programs = programs
            self.user = user
            self.workingDir = workingDir
        }
    }
    public var entries: [Entry]
    public let source: String

    public init(entries: [Entry], source: String) {
        self.entries = entries
        self.source = source
    }

    /// Reads and checks the file: every program it names must exist (the message names the
    /// image and the path), so a wrong map fails before any pod starts.
    public static func load(path: String) throws(KubeSimSetupError) -> ImageMap {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KubeSimSetupError("cannot read the image map \(path)")
        }
        let root: JSONValue
        do { root = try JSONValue.parse(Array(data)) } catch { throw KubeSimSetupError("image map \(path): \(error)") }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        func resolve(_ item: String) -> String {
            item.hasPrefix("/") || !item.contains("/") ? item : base.appendingPathComponent(item).standardizedFileURL.path
        }
        func absolute(_ item: String) -> String {
            item.hasPrefix("/") ? item : base.appendingPathComponent(item).standardizedFileURL.path
        }
        guard let items = root["images"]?.arrayValue else { throw KubeSimSetupError("image map \(path): no \"images\" list") }
        var entries: [Entry] = []
        for (index, item) in items.enumerated() {
            guard let repository = item["repository"]?.stringValue, !repository.isEmpty else {
                throw KubeSimSetupError("image map \(path): images[\(index)] has no \"repository\"")
            }
            let folders: [String]
            if let one = item["path"]?.stringValue {
                folders = [one]
            } else {
                folders = (item["path"]?.arrayValue ?? []).compactMap(\.stringValue)
            }
            let entrypoint = (item["entrypoint"]?.arrayValue ?? []).compactMap(\.stringValue)
            let cmd = (item["cmd"]?.arrayValue ?? []).compactMap(\.stringValue)
            var programs: [String: String] = [:]
            for (name, program) in item["programs"]?.objectValue ?? [:] {
                guard let program = program.stringValue else { continue }
                programs[name] = absolute(program)
            }
            let entry = Entry(
                repository: repository, path: folders.map(absolute),
                entrypoint: entrypoint.enumerated().map { $0.offset == 0 ? resolve($0.element) : $0.element },
                cmd: cmd.enumerated().map { $0.offset == 0 && entrypoint.isEmpty ? resolve($0.element) : $0.element },
                programs: programs, user: item["user"]?.intValue.map { Int($0) }, workingDir: item["workingDir"]?.stringValue)
            for (name, program) in programs.sorted(by: { $0.key < $1.key })
            where !FileManager.default.isExecutableFile(atPath: program) {
                throw KubeSimSetupError(
                    "image map \(path): image \(repository): program \"\(name)\" is \(program), which is not an executable file")
            }
            if let program = (entry.entrypoint.first ?? entry.cmd.first), program.hasPrefix("/"),
                !FileManager.default.isExecutableFile(atPath: program)
            {
                throw KubeSimSetupError("image map \(path): image \(repository): \(program) is not an executable file")
            }
            entries.append(entry)
        }
        return ImageMap(entries: entries, source: path)
    }

    static func repository(of image: String) -> String {
        var name = image
        if let at = name.firstIndex(of: "@") { name = String(name[..<at]) }
        if let colon = name.lastIndex(of: ":"), !name[colon...].contains("/") { name = String(name[..<colon]) }
        return name
    }

    func entry(for image: String) -> Entry? {
        let repository = Self.repository(of: image)
        return entries.first { $0.repository == repository }
    }

    /// The program and arguments a container runs, or why it cannot run.
    func commandLine(image: String, command: [String]?, args: [String]?, ports: [String: Int], searchPath: String?)
        -> Result<[String], ContainerStartError>
    {
        guard let entry = entry(for: image) else {
            return .failure(
                ContainerStartError(
                    reason: "ErrImageNeverPull",
                    message: "image \"\(image)\" is not in kubesim's image map (\(source)): add its repository there"))
        }
        // As a container runtime: command replaces the entrypoint and drops cmd; args replace cmd.
        var argv: [String]
        if let command, !command.isEmpty {
            argv = command + (args ?? [])
        } else {
            argv = (entry.entrypoint + (args ?? entry.cmd)).map { Self.expandPorts($0, ports) }
        }
        guard let program = argv.first else {
            return .failure(
                ContainerStartError(
                    reason: "CreateContainerError",
                    message: "no command: the container has none and the image map gives no entrypoint for \"\(entry.repository)\""))
        }
        if let standIn = entry.programs[program] {
            argv[0] = standIn
        } else if !program.contains("/") {
            let folders = entry.path + (searchPath ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":").map(String.init)
            guard let found = folders.map({ $0 + "/" + program }).first(where: { FileManager.default.isExecutableFile(atPath: $0) })
            else {
                return .failure(
                    ContainerStartError(
                        reason: "CreateContainerError",
                        message: "\"\(program)\": executable file not found in \(entry.path.joined(separator: ":")) or $PATH"))
            }
            argv[0] = found
        } else if !FileManager.default.isExecutableFile(atPath: program) {
            return .failure(ContainerStartError(reason: "CreateContainerError", message: "\"\(program)\": no such executable"))
        }
        return .success(argv)
    }

    static func expandPorts(_ text: String, _ ports: [String: Int]) -> String {
        var result = text
        for (name, port) in ports { result = result.replacingOccurrences(of: "$(PORT_\(name))", with: String(port)) }
        return result
    }
}

/// Why a container could not start (its `state.waiting.reason` and message).
struct ContainerStartError: Error, Sendable {
    var reason: String
    var message: String
}
