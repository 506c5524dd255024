import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@Suite("Every service boots, reports health and serves its admin endpoints")
struct ServiceBootTests {
  @Test("each service answers health Check SERVING, /healthz, /readyz and /metrics", arguments: InspectService.allCases)
  func boots(service: InspectService) async throws {
    try await TemporaryDirectory.with { directory in
      let built = try await buildService(service, configuration: testConfiguration(service, dataDirectory: directory))
      try await withRunningService(built) { addresses in
        let status = try await withClient(addresses.grpc) { client in
          try await Grpc_Health_V1_Health.Client(wrapping: client).check(.init()).status
        }
        #expect(status == .serving)

        let http = HTTPTestClient(addresses.http)
        let healthz = try await http.get("/healthz")
        #expect(healthz.status == 200)
        #expect(try healthz.json()["service"] as? String == service.rawValue)
        #expect(try healthz.json()["version"] as? String == InspectVersion.current)
        let readyz = try await http.get("/readyz")
        #expect(readyz.status == 200)
        #expect(try readyz.json()["status"] as? String == "serving")
        let metrics = try await http.get("/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        #expect(metrics.text.contains("rpc_server_requests_total{rpc_method=\"grpc.health.v1.Health/Check\""))
      }
    }
  }

  @Test("on graceful shutdown health turns NOT_SERVING and open Watch streams end")
  func shutdownEndsWatches() async throws {
    try await TemporaryDirectory.with { directory in
      let built = try await buildService(.sandbox, configuration: testConfiguration(.sandbox, dataDirectory: directory))
      let group = built.makeServiceGroup(handleSignals: false)
      try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let addresses = await built.host.listening.addresses()
        let seen = try await withClient(addresses.grpc) { client in
          try await Grpc_Health_V1_Health.Client(wrapping: client).watch(.init()) { response in
            var statuses: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = []
            for try await message in response.messages {
              statuses.append(message.status)
              if statuses.count == 1 { await group.triggerGracefulShutdown() }
            }
            return statuses
          }
        }
        #expect(seen == [.serving, .notServing])
        try await tasks.waitForAll()
      }
      #expect(!built.host.health.isServing)
    }
  }

  @Test("RPCs that are not built answer UNIMPLEMENTED with a message naming what is missing")
  func unimplementedAnswers() async throws {
    try await TemporaryDirectory.with { directory in
      // RepoClassifier and ModelRouter are left out: all of their RPCs are built.
      for service in [InspectService.sandbox] {
        let built = try await buildService(service, configuration: testConfiguration(service, dataDirectory: directory))
        try await withRunningService(built) { addresses in
          try await withClient(addresses.grpc) { client in
            let error = await #expect(throws: RPCError.self) {
              switch service {
              case .sandbox:
                _ = try await Inspect_Sandbox_V1_SandboxService.Client(wrapping: client).createSandbox(
                  .with {
                    $0.repository = "local/demo"
                    $0.limits = .with { $0.network = true }
                  })
              default:
                Issue.record("no unbuilt RPC to call on \(service)")
              }
            }
            #expect(error?.code == .unimplemented)
            #expect(error?.message.contains("not implemented yet") == true)
          }
        }
      }
    }
  }
}
