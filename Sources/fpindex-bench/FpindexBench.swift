import ArgumentParser

@main
struct FpindexBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fpindex-bench",
        abstract: "Benchmarks of fpindex-cluster. Each prints a table and, as its last line, one JSON object.",
        subcommands: [
            IndexBenchmark.self, ProxyBenchmark.self, ReplayBenchmark.self, EndToEndBenchmark.self, ChaosBenchmark.self, LegacyBenchmark.self,
            ImportBenchmark.self,
        ])
}
