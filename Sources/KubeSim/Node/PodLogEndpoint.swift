import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

extension KubeSimResponder {
    /// `GET /api/v1/namespaces/NS/pods/NAME/log`: `container`, `previous`, `tailLines`,
    /// `limitBytes`, `follow` (streams until the container stops or the pod is gone).
    func podLog(namespace: String, pod name: String, query: Query) async throws -> Response {
        let pod = try await store.get(Workloads.podType, namespace: namespace, name: name)
        let containers = (pod.value(at: ["spec", "containers"])?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
        let initContainers = (pod.value(at: ["spec", "initContainers"])?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
        let container: String
        if let asked = query["container"], !asked.isEmpty {
            guard containers.contains(asked) || initContainers.contains(asked) else {
                throw KubeSimError.badRequest("container \(asked) is not valid for pod \(name)")
            }
            container = asked
        } else if containers.count == 1 {
            container = containers[0]
        } else {
            throw KubeSimError.badRequest(
                "a container name must be specified for pod \(name), choose one of: [\(containers.joined(separator: " "))]")
        }
        guard let podLogs else {
            throw KubeSimError.badRequest(
                "container \"\(container)\" in pod \"\(name)\" is waiting to start: kubesim runs no containers (start it with --run-pods)")
        }
        guard let entry = podLogs.entry(namespace: namespace, pod: name, container: container), entry.podUID == pod.uid else {
            throw KubeSimError.badRequest("container \"\(container)\" in pod \"\(name)\" is waiting to start: ContainerCreating")
        }
        let previous = query["previous"] == "true"
        guard let path = previous ? entry.previous : entry.current else {
            throw KubeSimError.badRequest("previous terminated container \"\(container)\" in pod \"\(name)\" not found")
        }
        var text = (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data()
        if let tail = query["tailLines"].flatMap(Int.init), tail >= 0 { text = Self.lastLines(text, tail) }
        if let limit = query["limitBytes"].flatMap(Int.init), limit >= 0, text.count > limit { text = text.prefix(limit) }
        let initial = ByteBuffer(bytes: text)
        guard query["follow"] == "true", !previous else {
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: ResponseBody(byteBuffer: initial))
        }
        let fullSize = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? text.count
        let store = self.store
        let uid = pod.uid
        return Response(
            status: .ok, headers: [.contentType: "text/plain"],
            body: ResponseBody { writer in
                try await writer.write(initial)
                var offset = fullSize
                while true {
                    let handle = FileHandle(forReadingAtPath: path)
                    try? handle?.seek(toOffset: UInt64(offset))
                    let more = (try? handle?.readToEnd()) ?? nil
                    try? handle?.close()
                    if let more, !more.isEmpty {
                        offset += more.count
                        try await writer.write(ByteBuffer(bytes: more))
                        continue
                    }
                    let current = podLogs.entry(namespace: namespace, pod: name, container: container)
                    let stillRunning = current?.podUID == uid && current?.current == path && current?.running == true
                    let podExists = (try? await store.get(Workloads.podType, namespace: namespace, name: name))?.uid == uid
                    if !stillRunning || !podExists { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
                try await writer.finish(nil)
            })
    }

    static func lastLines(_ data: Data, _ count: Int) -> Data {
        if count == 0 { return Data() }
        var newlines = 0
        var index = data.endIndex
        if index > data.startIndex, data[data.index(before: index)] == UInt8(ascii: "\n") { index = data.index(before: index) }
        while index > data.startIndex {
            let previous = data.index(before: index)
            if data[previous] == UInt8(ascii: "\n") {
                newlines += 1
                if newlines == count { return data[index...] }
            }
            index = previous
        }
        return data
    }
}
