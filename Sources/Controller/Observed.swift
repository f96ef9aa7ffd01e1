import JetStream
import Kubernetes

/// The children a cluster owns, by role.
public enum ChildRole: String, Sendable, CaseIterable, Hashable {
    case statefulSet
    case headlessService
    case readService
    case podDisruptionBudget
    case proxyDeployment
    case proxyService
    case indexNetworkPolicy
    case proxyNetworkPolicy

    public var resourceType: ResourceType {
        switch self {
        case .statefulSet: return .statefulSets
        case .headlessService, .readService, .proxyService: return .services
        case .podDisruptionBudget: return .podDisruptionBudgets
        case .proxyDeployment: return .deployments
        case .indexNetworkPolicy, .proxyNetworkPolicy: return .networkPolicies
        }
    }

    public func name(_ model: ClusterModel) -> String {
        switch self {
        case .statefulSet, .headlessService, .podDisruptionBudget, .indexNetworkPolicy: return model.indexName
        case .readService: return model.readServiceName
        case .proxyDeployment, .proxyService, .proxyNetworkPolicy: return model.proxyName
        }
    }

    /// The object wanted in this role; nil when the spec wants none (a NetworkPolicy turned off).
    public func desired(_ children: DesiredChildren) throws -> JSONValue? {
        switch self {
        case .statefulSet: return try JSONValue(encoding: children.statefulSet)
        case .headlessService: return try JSONValue(encoding: children.headlessService)
        case .readService: return try JSONValue(encoding: children.readService)
        case .podDisruptionBudget: return try JSONValue(encoding: children.podDisruptionBudget)
        case .proxyDeployment: return try JSONValue(encoding: children.proxyDeployment)
        case .proxyService: return try JSONValue(encoding: children.proxyService)
        case .indexNetworkPolicy: return try children.indexNetworkPolicy.map { try JSONValue(encoding: $0) }
        case .proxyNetworkPolicy: return try children.proxyNetworkPolicy.map { try JSONValue(encoding: $0) }
        }
    }
}

/// What the JetStream side looks like, or why it could not be seen.
public enum JetStreamObservation: Sendable {
    case unavailable(String)
    case seen(stream: StreamInfo?, consumers: [String: ConsumerInfo])
}

/// Everything a reconcile reads, gathered before deciding anything.
public struct Observed: Sendable {
    public var cluster: FpindexCluster
    /// Children as the API server holds them (raw JSON: compared with what is wanted).
    public var children: [ChildRole: JSONValue]
    /// Children that exist with another owner: never written.
    public var foreign: Set<ChildRole>
    /// The index pods of the StatefulSet.
    public var pods: [Pod]
    public var jetStream: JetStreamObservation
    /// The NATS account's JetStream use and limits (for the stream's storage limit); nil when
    /// not read or not answered.
    public var account: JetStreamAccountUsage?

    public init(
        cluster: FpindexCluster, children: [ChildRole: JSONValue], foreign: Set<ChildRole> = [], pods: [Pod],
        jetStream: JetStreamObservation
    ) {
        self.cluster = cluster
        self.children = children
        self.foreign = foreign
        self.pods = pods
        self.jetStream = jetStream
    }

    public var proxyDeployment: Deployment? {
        children[.proxyDeployment].flatMap { try? $0.decode(as: Deployment.self) }
    }
}

extension JSONValue {
    /// Whether every member of `self` is present with the same value in `other`: what the
    /// controller wants is already there (the server may add defaults and other writers'
    /// fields). Arrays must have the same length, element by element subsets.
    public func isSubset(of other: JSONValue) -> Bool {
        switch (self, other) {
        case (.object(let mine), .object(let theirs)):
            return mine.allSatisfy { key, value in
                if value == .null { return theirs[key] == nil || theirs[key] == .null }
                guard let their = theirs[key] else { return false }
                return value.isSubset(of: their)
            }
        case (.array(let mine), .array(let theirs)):
            return mine.count == theirs.count && zip(mine, theirs).allSatisfy { $0.isSubset(of: $1) }
        case (.integer(let a), .number(let b)): return Double(a) == b
        case (.number(let a), .integer(let b)): return a == Double(b)
        default:
            return self == other
        }
    }
}
