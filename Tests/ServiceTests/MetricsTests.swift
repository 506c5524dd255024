import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@Suite("Prometheus metrics of RPCs")
struct MetricsTests {
  @Test("after N calls of an RPC its counter and its histogram count in /metrics rose by exactly N")
  func counterRisesByN() async throws {
    try await TemporaryDirectory.with { directory in
      let built = try await buildService(
        .modelRouter, configuration: testConfiguration(.modelRouter, dataDirectory: directory))
      try await withRunningService(built) { addresses in
        let http = HTTPTestClient(addresses.http)
        let counter =
          "rpc_server_requests_total{rpc_method=\"inspect.model.v1.ModelRouterService/Transcribe\",rpc_grpc_status_code=\"INVALID_ARGUMENT\"}"
        let histogram =
          "rpc_server_duration_seconds_count{rpc_method=\"inspect.model.v1.ModelRouterService/Transcribe\"}"
        let okCounter =
          "rpc_server_requests_total{rpc_method=\"grpc.health.v1.Health/Check\",rpc_grpc_status_code=\"OK\"}"
        let before = try await http.get("/metrics").text
        let n = 7
        try await withClient(addresses.grpc) { client in
          let router = Inspect_Model_V1_ModelRouterService.Client(wrapping: client)
          for _ in 0..<n {
            await #expect(throws: RPCError.self) { _ = try await router.transcribe(.init()) }
          }
          let health = Grpc_Health_V1_Health.Client(wrapping: client)
          for _ in 0..<3 { _ = try await health.check(.init()) }
        }
        let after = try await http.get("/metrics").text
        #expect(metricValue(after, counter) - metricValue(before, counter) == Double(n))
        #expect(metricValue(after, histogram) - metricValue(before, histogram) == Double(n))
        #expect(metricValue(after, okCounter) - metricValue(before, okCounter) == 3)
      }
    }
  }
}
