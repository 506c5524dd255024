import Foundation
import Prometheus

/// The sandbox metrics on `/metrics`: claims by source, warm pool sizes, live sandboxes.
struct SandboxMetrics: Sendable {
  let registry: PrometheusCollectorRegistry

  init(_ registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) { self.registry = registry }

  /// `inspect_sandbox_cgroup_mode{version="v1"} 1`: which cgroups limit sandboxes here.
  func cgroups(version: String) {
    registry.makeGauge(name: "inspect_sandbox_cgroup_mode", labels: [("version", version)]).set(Double(1))
  }

  func claimed(source: SandboxEntry.Source) {
    registry.makeCounter(name: "inspect_sandbox_claims_total", labels: [("source", "\(source)")]).increment()
  }

  func missed(repository: String) {
    registry.makeCounter(name: "inspect_sandbox_pool_misses_total", labels: [("repository", repository)]).increment()
  }

  func pool(repository: String, ready: Int, creating: Int) {
    registry.makeGauge(name: "inspect_sandbox_pool_ready", labels: [("repository", repository)]).set(Double(ready))
    registry.makeGauge(name: "inspect_sandbox_pool_creating", labels: [("repository", repository)])
      .set(Double(creating))
  }

  func live(_ count: Int) {
    registry.makeGauge(name: "inspect_sandbox_live", labels: []).set(Double(count))
  }
}
