import ArgumentParser
import InspectKit

/// `inspect-bench`: benchmarks against real service processes on loopback. Each subcommand prints
/// exactly one `bench NAME key=value …` line on standard output (names and keys pinned in
/// `docs/CONTRACTS.md`); progress and errors go to standard error. `scripts/bench.sh` runs them.
@main
struct InspectBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inspect-bench",
    abstract: "Benchmarks of Inspect's services, against real processes on 127.0.0.1.",
    version: InspectVersion.current,
    subcommands: [
      AckBenchmark.self, FanoutBenchmark.self, ReplayBenchmark.self, ScaleBenchmark.self, ClaimBenchmark.self,
      CreateBenchmark.self, RestoreBenchmark.self, SnapshotBenchmark.self, DensityBenchmark.self,
      RouterTTFTBenchmark.self, RouterThroughputBenchmark.self, RouterConcurrencyBenchmark.self,
      AgentStepBenchmark.self, GatewayGetBenchmark.self, GatewaySSEFanoutBenchmark.self, ClassifierBenchmark.self,
    ]
  )
}

/// A progress note on standard error (standard output carries only the `bench` line).
func progress(_ text: String) {
  StandardError.write("inspect-bench: \(text)\n")
}
