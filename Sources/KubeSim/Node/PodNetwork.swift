import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// The node's network: a bridge with the pods' gateway address, a network namespace and veth
/// pair per pod, the service addresses (on the bridge, so that pods and the host reach the
/// service proxy's listeners), and per-pod `/etc/hosts` files (`ip netns exec` mounts
/// `/etc/netns/NAME/hosts` over `/etc/hosts`), which is how names of Services resolve.
actor PodNetwork {
    let configuration: NodeConfiguration
    let logger: Logger
    let ip: String
    private var nextHost = 2
    private var podAddresses: [String: String] = [:]  // namespace name -> address
    private var serviceAddresses: Set<String> = []

    init(configuration: NodeConfiguration, ip: String, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.ip = ip
    }

    var namespacePrefix: String { "ks-\(configuration.bridge)-" }

    /// Removes what a previous run with the same bridge left (after a crash), then creates the bridge.
    func setUp() async throws {
        try await removeStale()
        try FileManager.default.createDirectory(atPath: ContainerLaunch.stage, withIntermediateDirectories: true)
        let bridge = configuration.bridge
        try await HostCommand.run(ip, ["link", "add", bridge, "type", "bridge"])
        try await HostCommand.run(ip, ["addr", "add", "\(configuration.gateway)/16", "dev", bridge])
        try await HostCommand.run(ip, ["link", "set", bridge, "up"])
        logger.info("pod network ready", metadata: ["bridge": "\(bridge)", "gateway": "\(configuration.gateway)"])
    }

    /// Kills the processes of leftover namespaces of this bridge and deletes them and the bridge.
    func removeStale() async throws {
        let listing = (try? await HostCommand.run(ip, ["netns", "list"])) ?? ""
        for line in listing.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            if name.hasPrefix(namespacePrefix) { await removeNamespace(name) }
        }
        if (try? await HostCommand.run(ip, ["link", "show", configuration.bridge])) != nil {
            try await HostCommand.run(ip, ["link", "del", configuration.bridge])
        }
    }

    /// Creates the pod's namespace, connected to the bridge. Returns its name and address.
    func addPod(uid: String, hosts: String) async throws -> (namespace: String, address: String) {
        let token = String(uid.replacingOccurrences(of: "-", with: "").prefix(8))
        let name = namespacePrefix + token
        var address = ""
        repeat {
            let n = nextHost
            nextHost = nextHost >= 65_000 ? 2 : nextHost + 1
            address = "\(configuration.podSubnet).\(n / 256).\(n % 256)"
            if n % 256 == 0 || n % 256 == 255 { address = "" }
        } while address.isEmpty || podAddresses.values.contains(address)
        podAddresses[name] = address
        try writeFiles(namespace: name, hosts: hosts)
        let hostSide = "kv" + token
        let podSide = "kp" + token
        let q = HostCommand.quote
        let script = """
            set -e
            \(q(ip)) netns add \(q(name))
            \(q(ip)) link add \(q(hostSide)) type veth peer name \(q(podSide))
            \(q(ip)) link set \(q(hostSide)) master \(q(configuration.bridge)) up
            \(q(ip)) link set \(q(podSide)) netns \(q(name))
            \(q(ip)) -n \(q(name)) link set \(q(podSide)) name eth0
            \(q(ip)) -n \(q(name)) addr add \(address)/16 dev eth0
            \(q(ip)) -n \(q(name)) link set eth0 up
            \(q(ip)) -n \(q(name)) link set lo up
            \(q(ip)) -n \(q(name)) route add default via \(configuration.gateway)
            """
        do {
            try await HostCommand.run("/bin/sh", ["-c", script])
        } catch {
            await removeNamespace(name)
            throw error
        }
        return (name, address)
    }

    /// Kills whatever still runs in the namespace, deletes it (and so its veth pair) and its files.
    func removeNamespace(_ name: String) async {
        let pids = (try? await HostCommand.run(ip, ["netns", "pids", name])) ?? ""
        for pid in pids.split(whereSeparator: \.isWhitespace).compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
        _ = try? await HostCommand.run(ip, ["netns", "del", name])
        try? FileManager.default.removeItem(atPath: "/etc/netns/\(name)")
        podAddresses[name] = nil
    }

    /// `/etc/netns/NAME/{hosts,resolv.conf}`, rewritten in place (the pods' mounts see the same file).
    func writeFiles(namespace: String, hosts: String) throws {
        let folder = "/etc/netns/\(namespace)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Self.overwrite(folder + "/hosts", hosts)
        // No DNS server: names come from the hosts file; a lookup of anything else fails at once
        // instead of timing out against the host's resolver, which is unreachable from the pod.
        try Self.overwrite(folder + "/resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    }

    func updateHosts(namespace: String, hosts: String) {
        do { try Self.overwrite("/etc/netns/\(namespace)/hosts", hosts) } catch {
            logger.warning("cannot update a pod's hosts file", metadata: ["netns": "\(namespace)", "error": "\(error)"])
        }
    }

    static func overwrite(_ path: String, _ text: String) throws {
        let data = Data(text.utf8)
        if let existing = FileManager.default.contents(atPath: path), existing == data { return }
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: data)
            return
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: data)
    }

    /// Makes the host own `address` (a /32 on the bridge), so the proxy can listen on it.
    func addServiceAddress(_ address: String) async throws {
        guard serviceAddresses.insert(address).inserted else { return }
        do {
            try await HostCommand.run(ip, ["addr", "add", "\(address)/32", "dev", configuration.bridge])
        } catch {
            serviceAddresses.remove(address)
            throw error
        }
    }

    func removeServiceAddress(_ address: String) async {
        guard serviceAddresses.remove(address) != nil else { return }
        _ = try? await HostCommand.run(ip, ["addr", "del", "\(address)/32", "dev", configuration.bridge])
    }

    /// Deletes every pod namespace left and the bridge (with its addresses).
    func tearDown() async {
        for name in podAddresses.keys { await removeNamespace(name) }
        _ = try? await HostCommand.run(ip, ["link", "del", configuration.bridge])
        serviceAddresses = []
    }
}
