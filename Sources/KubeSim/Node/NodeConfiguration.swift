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

/// Which local program stands in for an image. A JSON file:
///
/// ```json
/// {"images": [
///   {"repository": "fpindex-cluster", "path": "../.build/debug"},
///   {"repository": "nats", "path": "../.tools/bin", "entrypoint": ["nats-server"]},
///   {"repository": "ghcr.io/acoustid/acoustid-index",
///    "entrypoint": ["../.build/debug/fpindex-dev", "--host", "0.0.0.0", "--port", "$(PORT_http)", "--dir", "/data"]}
/// ]}
/// ```
///
/// An image matches an entry when its repository (the image without `:tag` or `@digest`)
/// equals `repository`. As with a container runtime, the container's `command` replaces the
/// entry's `entrypoint`, and `args` follow. A relative program name is looked up in `path`
/// (then `PATH`); relative paths in the file are relative to the file's folder. In the
/// entrypoint, `$(PORT_<name>)` is the container port of that name.
public struct ImageMap: Sendable {
    public struct Entry: Sendable {
        public var repository: String
        public var path: [String]
        public var entrypoint: [String]
    }
    public var entries: [Entry]
    public let source: String

    public init(entries: [Entry], source: String) {
        self.entries = entries
        self.source = source
    }

    /// Reads and checks the file.
    public static func load(path: String) throws(KubeSimError) -> ImageMap {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .badRequest("cannot read the image map \(path)")
        }
        let root: JSONValue
        do { root = try JSONValue.parse(Array(data)) } catch { throw .badRequest("image map \(path): \(error)") }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        func resolve(_ item: String) -> String {
            item.hasPrefix("/") || !item.contains("/") ? item : base.appendingPathComponent(item).standardizedFileURL.path
        }
        guard let items = root["images"]?.arrayValue else { throw .badRequest("image map \(path): no \"images\" list") }
        var entries: [Entry] = []
        for (index, item) in items.enumerated() {
            guard let repository = item["repository"]?.stringValue, !repository.isEmpty else {
                throw .badRequest("image map \(path): images[\(index)] has no \"repository\"")
            }
            let folders: [String]
            if let one = item["path"]?.stringValue {
                folders = [one]
            } else {
                folders = (item["path"]?.arrayValue ?? []).compactMap(\.stringValue)
            }
            let entrypoint = (item["entrypoint"]?.arrayValue ?? []).compactMap(\.stringValue)
            entries.append(
                Entry(
                    repository: repository,
                    path: folders.map { $0.hasPrefix("/") ? $0 : base.appendingPathComponent($0).standardizedFileURL.path },
                    entrypoint: entrypoint.enumerated().map { $0.offset == 0 ? resolve($0.element) : $0.element }))
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
        var argv: [String]
        if let command, !command.isEmpty {
            argv = command + (args ?? [])
        } else {
            argv = entry.entrypoint.map { Self.expandPorts($0, ports) } + (args ?? [])
        }
        guard let program = argv.first else {
            return .failure(
                ContainerStartError(
                    reason: "CreateContainerError",
                    message: "no command: the container has none and the image map gives no entrypoint for \"\(entry.repository)\""))
        }
        if !program.contains("/") {
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
