// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "fpindex-cluster",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fpindex-dev", targets: ["fpindex-dev"]),
        .executable(name: "fpindex-proxy", targets: ["fpindex-proxy"]),
        .executable(name: "fpindex-updater", targets: ["fpindex-updater"]),
        .executable(name: "fpindex-bench", targets: ["fpindex-bench"]),
        .executable(name: "fpindex-import", targets: ["fpindex-import"]),
        .executable(name: "fpindex-verify", targets: ["fpindex-verify"]),
        .executable(name: "fpindex-backup", targets: ["fpindex-backup"]),
        .executable(name: "kubesim", targets: ["kubesim"]),
        .executable(name: "fpindex-controller", targets: ["fpindex-controller"]),
        .library(name: "FpindexAPI", targets: ["FpindexAPI"]),
        .library(name: "DevIndex", targets: ["DevIndex"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // Without the default traits: full Foundation (for form-encoded dates) and swift-configuration
        // are not needed, and full Foundation alone costs each process about 10 MB of memory.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        // C libraries (Debian packages), used through pkg-config.
        .systemLibrary(name: "CNats", pkgConfig: "libnats", providers: [.apt(["libnats-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CYaml", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        // glibc malloc tuning (mallopt), which Swift's Glibc module does not export. Linking it
        // limits malloc to one arena from process start (a C constructor).
        .target(name: "CMallocTuning"),
        // posix_spawn with an empty signal mask, default dispositions and no inherited descriptors.
        .target(name: "CProcessSpawn"),

        // The one way this project starts processes: as a container runtime would (clean signal
        // state), reaped off the cooperative pool, stoppable with a grace period.
        .target(name: "ProcessSpawning", dependencies: ["CProcessSpawn"], swiftSettings: swiftSettings),

        // Wire contract: types, JSON + MessagePack codecs, validation, stream subjects. Pure Swift.
        .target(name: "FpindexAPI", swiftSettings: swiftSettings),

        // A Swift wrapper over cnats: connection, stream management, async publish, direct get, consumers.
        .target(
            name: "JetStream",
            dependencies: [
                "CNats",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // The replica consumer's shape, shared by the updater (which reads through it) and the
        // controller (which creates and repairs it).
        .target(name: "ReplicaConsumer", dependencies: ["FpindexAPI", "JetStream"], swiftSettings: swiftSettings),

        // The fpindex HTTP API as a client (MessagePack over pooled connections): the updater's
        // writes, fpindex-verify's reads and searches.
        .target(
            name: "FpindexClient",
            dependencies: [
                "FpindexAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Moving an index onto the stream and keeping it safe: bulk import, verification against
        // replicas, stream backup and restore (fpindex-import, fpindex-verify, fpindex-backup).
        .target(
            name: "StreamMigration",
            dependencies: [
                "FpindexAPI",
                "FpindexClient",
                "JetStream",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // The HTTP edge shared by fpindex-dev and fpindex-proxy: routes, negotiation, error replies.
        .target(
            name: "FpindexHTTP",
            dependencies: [
                "FpindexAPI",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // fpindex-proxy: fpindex API writes become JetStream messages; reads go to the read backend.
        .target(
            name: "Proxy",
            dependencies: [
                "FpindexAPI",
                "FpindexHTTP",
                "JetStream",
                "LegacyProtocol",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),

        // fpindex-updater: applies the stream to one fpindex with the checkpoint protocol.
        .target(
            name: "Updater",
            dependencies: [
                "FpindexAPI",
                "FpindexClient",
                "JetStream",
                "ReplicaConsumer",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // The embedded fingerprint index (fpindex-dev): engine, persistence, HTTP server.
        .target(
            name: "LegacyProtocol",
            dependencies: [
                "FpindexAPI",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DevIndex",
            dependencies: [
                "FpindexAPI",
                "FpindexHTTP",
                "LegacyProtocol",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fpindex-dev",
            dependencies: [
                "DevIndex",
                "LegacyProtocol",
                "CMallocTuning",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fpindex-proxy",
            dependencies: [
                "Proxy",
                "CommandSupport",
                "FpindexAPI",
                "JetStream",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fpindex-updater",
            dependencies: [
                "Updater",
                "FpindexAPI",
                "CMallocTuning",
                "CommandSupport",
                "JetStream",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fpindex-bench",
            dependencies: [
                "FpindexAPI",
                "StreamMigration",
                "JetStream",
                "LegacyProtocol",
                "ReplicaConsumer",
                "ProcessSpawning",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "fpindex-import",
            dependencies: [
                "StreamMigration",
                "CommandSupport",
                "JetStream",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fpindex-verify",
            dependencies: [
                "StreamMigration",
                "CommandSupport",
                "FpindexAPI",
                "FpindexClient",
                "JetStream",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fpindex-backup",
            dependencies: [
                "StreamMigration",
                "CommandSupport",
                "FpindexAPI",
                "JetStream",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // Kubernetes REST client: kubeconfig (libyaml) and in-cluster config, libcurl transport, watch, models.
        .target(
            name: "Kubernetes",
            dependencies: [
                "CCurl",
                "CYaml",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // kubesim: a Kubernetes API server emulator (tests and local runs). Does not import Kubernetes.
        .target(
            name: "KubeSim",
            dependencies: [
                "ProcessSpawning",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "kubesim",
            dependencies: [
                "KubeSim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // fpindex-controller: the FpindexCluster operator (decide, then apply).
        .target(
            name: "Controller",
            dependencies: [
                "Kubernetes",
                "JetStream",
                "ReplicaConsumer",
                "FpindexAPI",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fpindex-controller",
            dependencies: [
                "Controller",
                "Kubernetes",
                "CommandSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // Flag + environment handling shared by the executables.
        .target(
            name: "CommandSupport",
            dependencies: [
                "FpindexAPI",
                "JetStream",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // Test helpers: free ports, child processes, nats-server and envtest launchers, waiting with deadlines.
        .target(
            name: "TestSupport",
            dependencies: [
                "FpindexAPI",
                "JetStream",
                "ProcessSpawning",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CLibraryTests",
            dependencies: ["CNats", "CCurl", "CYaml", "CMallocTuning", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "JetStreamTests",
            dependencies: ["JetStream", "FpindexAPI", "TestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ProxyTests",
            dependencies: [
                "Proxy", "JetStream", "FpindexAPI", "TestSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "UpdaterTests",
            dependencies: [
                "Updater", "JetStream", "FpindexAPI", "LegacyProtocol", "TestSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KubernetesTests",
            dependencies: ["Kubernetes", "KubeSim", "TestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ControllerTests",
            dependencies: [
                "Controller", "Kubernetes", "KubeSim", "JetStream", "FpindexAPI", "ReplicaConsumer", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "JetStream", "LegacyProtocol", "TestSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KubeSimTests",
            dependencies: [
                "KubeSim", "TestSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        // fpindex-bench chaos, short: random faults on a real data plane, then an exact comparison.
        .testTarget(name: "ChaosTests", dependencies: ["TestSupport"], swiftSettings: swiftSettings),
        // The executables' flags and environment, parsed as the binaries do (no process started).
        .testTarget(
            name: "CommandTests",
            dependencies: [
                "fpindex-updater", "Updater", "FpindexAPI", "CommandSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // fpindex-import, fpindex-verify and fpindex-backup as a user runs them, on real nats-servers,
        // updaters and fpindexes; the row parsers alone, fuzzed.
        .testTarget(
            name: "MigrationTests",
            dependencies: [
                "StreamMigration", "JetStream", "FpindexAPI", "TestSupport", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FpindexAPITests",
            dependencies: ["FpindexAPI"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DevIndexTests",
            dependencies: [
                "DevIndex", "FpindexAPI", "LegacyProtocol", "TestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
