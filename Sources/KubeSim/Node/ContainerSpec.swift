import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Everything a container process needs, resolved from the pod, its Secrets, ConfigMaps and
/// claims: program and arguments, environment, mounts and user. Pure, so it is tested alone.
struct ContainerLaunch: Sendable {
    var argv: [String]
    var environment: [String: String]
    var mounts: [Mount]
    var workingDirectory: String?
    var user: (uid: Int, gid: Int, groups: [Int])?
    /// Set when the container runs as root although it asked for a user (see `ContainerSpecs.launch`).
    var warning: String?

    struct Mount: Sendable, Equatable {
        var source: String
        var target: String
        var readOnly: Bool
    }

    /// The order to mount in: a mount goes after those whose targets are above its own (so it
    /// is not hidden by them) and before any that would hide its source (a volume under
    /// kubesim's state folder in /tmp, when a container mounts an emptyDir on /tmp).
    static func mountOrder(_ mounts: [Mount]) -> [Mount] {
        func inside(_ path: String, _ folder: String) -> Bool {
            path == folder || path.hasPrefix(folder.hasSuffix("/") ? folder : folder + "/")
        }
        func mustPrecede(_ a: Mount, _ b: Mount) -> Bool {
            (a.target != b.target && inside(b.target, a.target)) || (inside(a.source, b.target) && !inside(b.source, a.target))
        }
        var left = mounts
        var ordered: [Mount] = []
        while !left.isEmpty {
            let next =
                left.firstIndex { candidate in !left.contains { other in other != candidate && mustPrecede(other, candidate) } } ?? 0
            ordered.append(left.remove(at: next))
        }
        return ordered
    }

    /// The `sh` script run inside the pod's network namespace (and a mount namespace of its own,
    /// which `ip netns exec` creates): bind-mount the volumes, change directory and user, exec.
    /// Mount points that do not exist are created first (empty folders on the host).
    func script(setpriv: String, stage: String = ContainerLaunch.stage) -> String {
        let q = HostCommand.quote
        // The script's own tools come from the system folders, whatever PATH the pod sets; the
        // program gets the pod's PATH back.
        var lines = ["set -e", "pod_path=\"${PATH-}\"", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
        var program = "\"$0\""
        if !mounts.isEmpty {
            // Sources and the program are bind-mounted to a private staging tmpfs first: a volume
            // on /tmp (say) would otherwise hide a source or the program itself under /tmp.
            lines.append("mount -t tmpfs -o size=1m,mode=0755 kubesim-stage \(q(stage))")
            let ordered = Self.mountOrder(mounts)
            for (n, mount) in ordered.enumerated() {
                lines.append("mkdir \(q("\(stage)/\(n)")) && mount --bind \(q(mount.source)) \(q("\(stage)/\(n)"))")
            }
            if let executable = argv.first, executable.hasPrefix("/") {
                let url = URL(fileURLWithPath: executable)
                lines.append("mkdir \(q(stage + "/bin")) && mount --bind \(q(url.deletingLastPathComponent().path)) \(q(stage + "/bin"))")
                program = q(stage + "/bin/" + url.lastPathComponent)
            }
            for (n, mount) in ordered.enumerated() {
                lines.append("mkdir -p \(q(mount.target))")
                lines.append("mount --bind \(q("\(stage)/\(n)")) \(q(mount.target))")
                if mount.readOnly { lines.append("mount -o remount,bind,ro \(q(mount.target))") }
            }
        }
        if let workingDirectory { lines.append("cd \(q(workingDirectory))") }
        lines.append("PATH=\"$pod_path\"; export PATH")
        // "$0" is the program, "$@" its arguments.
        if let user {
            let groups = ([user.gid] + user.groups).map(String.init).joined(separator: ",")
            lines.append("exec \(q(setpriv)) --reuid \(user.uid) --regid \(user.gid) --groups \(groups) -- \(program) \"$@\"")
        } else {
            lines.append("exec \(program) \"$@\"")
        }
        return lines.joined(separator: "\n")
    }

    /// Where the script stages sources (a folder the node creates on the host; each container
    /// mounts its own tmpfs over it).
    static let stage = "/run/kubesim-stage"
}

/// What the pod's containers can refer to.
struct PodContext: Sendable {
    var pod: JSONValue
    var podIP: String
    var hostIP: String
    var kubernetesServiceHost: String
    /// name -> object, for secretKeyRef, configMapKeyRef, envFrom.
    var secrets: [String: JSONValue]
    var configMaps: [String: JSONValue]
    /// volume name -> host folder.
    var volumes: [String: String]
    var imageMap: ImageMap
}

enum ContainerSpecs {
    /// Resolves one container of the pod.
    static func launch(_ container: JSONValue, in context: PodContext) -> Result<ContainerLaunch, ContainerStartError> {
        let pod = context.pod
        var environment: [String: String] = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": pod.value(at: ["spec", "hostname"])?.stringValue ?? pod.name,
            "HOME": "/root",
            "KUBERNETES_SERVICE_HOST": context.kubernetesServiceHost,
            "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": "443",
            "KUBERNETES_PORT": "tcp://\(context.kubernetesServiceHost):443",
        ]
        for source in container["envFrom"]?.arrayValue ?? [] {
            let prefix = source["prefix"]?.stringValue ?? ""
            if let reference = source["configMapRef"] {
                let name = reference["name"]?.stringValue ?? ""
                guard let map = context.configMaps[name] else {
                    if reference["optional"]?.boolValue == true { continue }
                    return .failure(.init(reason: "CreateContainerConfigError", message: "configmap \"\(name)\" not found"))
                }
                for (key, value) in map["data"]?.objectValue ?? [:] { environment[prefix + key] = value.stringValue ?? "" }
            }
            if let reference = source["secretRef"] {
                let name = reference["name"]?.stringValue ?? ""
                guard let secret = context.secrets[name] else {
                    if reference["optional"]?.boolValue == true { continue }
                    return .failure(.init(reason: "CreateContainerConfigError", message: "secret \"\(name)\" not found"))
                }
                for (key, value) in secret["data"]?.objectValue ?? [:] { environment[prefix + key] = decode(value) }
            }
        }
        for variable in container["env"]?.arrayValue ?? [] {
            guard let name = variable["name"]?.stringValue else { continue }
            if let value = variable["value"]?.stringValue {
                environment[name] = expand(value, environment)
                continue
            }
            guard let from = variable["valueFrom"] else {
                environment[name] = ""
                continue
            }
            switch resolve(from, context: context) {
            case .success(let value?): environment[name] = value
            case .success(nil): continue
            case .failure(let error): return .failure(error)
            }
        }
        var ports: [String: Int] = [:]
        for port in container["ports"]?.arrayValue ?? [] {
            if let name = port["name"]?.stringValue, let number = port["containerPort"]?.intValue { ports[name] = Int(number) }
        }
        let command = container["command"]?.arrayValue?.compactMap(\.stringValue).map { expand($0, environment) }
        let args = container["args"]?.arrayValue?.compactMap(\.stringValue).map { expand($0, environment) }
        let argv: [String]
        switch context.imageMap.commandLine(
            image: container["image"]?.stringValue ?? "", command: command, args: args, ports: ports, searchPath: environment["PATH"])
        {
        case .success(let resolved): argv = resolved
        case .failure(let error): return .failure(error)
        }
        var mounts: [ContainerLaunch.Mount] = []
        for mount in container["volumeMounts"]?.arrayValue ?? [] {
            let volume = mount["name"]?.stringValue ?? ""
            guard let target = mount["mountPath"]?.stringValue, target.hasPrefix("/") else { continue }
            guard var source = context.volumes[volume] else {
                return .failure(.init(reason: "CreateContainerConfigError", message: "volume \"\(volume)\" is not available"))
            }
            if let sub = mount["subPath"]?.stringValue, !sub.isEmpty {
                guard !sub.split(separator: "/").contains("..") else {
                    return .failure(.init(reason: "CreateContainerConfigError", message: "subPath \"\(sub)\" leaves the volume"))
                }
                source += "/" + sub
            }
            mounts.append(.init(source: source, target: target, readOnly: mount["readOnly"]?.boolValue == true))
        }
        let image = context.imageMap.entry(for: container["image"]?.stringValue ?? "")
        var runAs = user(container, pod, imageUser: image?.user)
        var warning: String?
        if let wanted = runAs, !executable(argv[0], by: wanted) {
            // A checkout under a private home folder: the program is out of the user's reach.
            // Running it as root beats a pod that can never start; the event says so.
            warning = "\(argv[0]) is not executable by uid \(wanted.uid) (a parent folder is private): running as root instead"
            runAs = nil
        }
        return .success(
            ContainerLaunch(
                argv: argv, environment: environment, mounts: mounts,
                workingDirectory: container["workingDir"]?.stringValue ?? image?.workingDir,
                user: runAs, warning: warning))
    }

    /// Whether `uid` (with those groups) can reach and execute `path`, judged by mode bits.
    static func executable(_ path: String, by user: (uid: Int, gid: Int, groups: [Int])) -> Bool {
        let groups = Set([user.gid] + user.groups)
        func allows(_ target: String, _ bit: Int) -> Bool {
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: target),
                let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue,
                let owner = (attributes[.ownerAccountID] as? NSNumber)?.intValue,
                let group = (attributes[.groupOwnerAccountID] as? NSNumber)?.intValue
            else { return false }
            if owner == user.uid { return mode & (bit << 6) != 0 }
            if groups.contains(group) { return mode & (bit << 3) != 0 }
            return mode & bit != 0
        }
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath()
        var folder = real.deletingLastPathComponent()
        while folder.path != "/" {
            if !allows(folder.path, 1) { return false }
            folder.deleteLastPathComponent()
        }
        return allows(real.path, 1)
    }

    /// The user a container runs as: `runAsUser`/`runAsGroup` of the container, else the pod,
    /// else the image's `user`; `runAsNonRoot` with none of them runs as 65534 (nobody).
    static func user(_ container: JSONValue, _ pod: JSONValue, imageUser: Int? = nil) -> (uid: Int, gid: Int, groups: [Int])? {
        let podContext = pod.value(at: ["spec", "securityContext"]) ?? [:]
        let own = container["securityContext"] ?? [:]
        func setting(_ key: String) -> JSONValue? { own[key] ?? podContext[key] }
        var uid = setting("runAsUser")?.intValue.map { Int($0) } ?? imageUser
        if uid == nil, setting("runAsNonRoot")?.boolValue == true { uid = 65534 }
        guard let uid, uid != 0 else { return nil }
        let gid = setting("runAsGroup")?.intValue.map { Int($0) } ?? uid
        var groups = (podContext["supplementalGroups"]?.arrayValue ?? []).compactMap { $0.intValue.map { Int($0) } }
        if let fsGroup = podContext["fsGroup"]?.intValue { groups.append(Int(fsGroup)) }
        return (uid, gid, groups)
    }

    /// The owner the pod's writable volumes get: its user and fsGroup.
    static func volumeOwner(_ pod: JSONValue) -> (uid: Int, gid: Int)? {
        let podContext = pod.value(at: ["spec", "securityContext"]) ?? [:]
        let uid = podContext["runAsUser"]?.intValue.map { Int($0) }
        let gid = podContext["fsGroup"]?.intValue.map { Int($0) } ?? podContext["runAsGroup"]?.intValue.map { Int($0) }
        if uid == nil, gid == nil { return nil }
        return (uid ?? 0, gid ?? uid ?? 0)
    }

    static func resolve(_ from: JSONValue, context: PodContext) -> Result<String?, ContainerStartError> {
        if let field = from.value(at: ["fieldRef", "fieldPath"])?.stringValue {
            return .success(fieldValue(field, context: context))
        }
        if let reference = from["secretKeyRef"] {
            return keyReference(reference, in: context.secrets, kind: "Secret", namespace: context.pod.namespace).map {
                $0.map(decode)
            }
        }
        if let reference = from["configMapKeyRef"] {
            return keyReference(reference, in: context.configMaps, kind: "ConfigMap", namespace: context.pod.namespace).map {
                $0?.stringValue
            }
        }
        return .success("")
    }

    /// One key of a Secret or ConfigMap (its raw `data` value); nil when optional and missing.
    static func keyReference(_ reference: JSONValue, in objects: [String: JSONValue], kind: String, namespace: String)
        -> Result<JSONValue?, ContainerStartError>
    {
        let name = reference["name"]?.stringValue ?? ""
        let key = reference["key"]?.stringValue ?? ""
        let optional = reference["optional"]?.boolValue == true
        guard let object = objects[name] else {
            return optional
                ? .success(nil)
                : .failure(.init(reason: "CreateContainerConfigError", message: "\(kind.lowercased()) \"\(name)\" not found"))
        }
        guard let value = object.value(at: ["data", key]) else {
            return optional
                ? .success(nil)
                : .failure(.init(reason: "CreateContainerConfigError", message: "couldn't find key \(key) in \(kind) \(namespace)/\(name)"))
        }
        return .success(value)
    }

    /// The downward API's fields.
    static func fieldValue(_ path: String, context: PodContext) -> String {
        let pod = context.pod
        switch path {
        case "metadata.name": return pod.name
        case "metadata.namespace": return pod.namespace
        case "metadata.uid": return pod.uid
        case "spec.nodeName": return pod.value(at: ["spec", "nodeName"])?.stringValue ?? ""
        case "spec.serviceAccountName": return pod.value(at: ["spec", "serviceAccountName"])?.stringValue ?? "default"
        case "status.podIP", "status.podIPs": return context.podIP
        case "status.hostIP", "status.hostIPs": return context.hostIP
        default:
            for (prefix, key) in [("metadata.labels['", "labels"), ("metadata.annotations['", "annotations")]
            where path.hasPrefix(prefix) && path.hasSuffix("']") {
                let name = String(path.dropFirst(prefix.count).dropLast(2))
                return pod.value(at: ["metadata", key, name])?.stringValue ?? ""
            }
            return ""
        }
    }

    static func decode(_ value: JSONValue) -> String {
        guard let text = value.stringValue, let data = Data(base64Encoded: text) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// `$(VAR)` references to variables defined before; `$$(VAR)` escapes; unknown ones stay as written.
    static func expand(_ text: String, _ environment: [String: String]) -> String {
        guard text.contains("$(") else { return text }
        var result = ""
        var index = text.startIndex
        while index < text.endIndex {
            let rest = text[index...]
            if rest.hasPrefix("$$(") {
                result += "$("
                index = text.index(index, offsetBy: 3)
            } else if rest.hasPrefix("$("), let close = rest.firstIndex(of: ")") {
                let name = String(rest[rest.index(index, offsetBy: 2)..<close])
                result += environment[name] ?? "$(\(name))"
                index = text.index(after: close)
            } else {
                result.append(text[index])
                index = text.index(after: index)
            }
        }
        return result
    }
}
