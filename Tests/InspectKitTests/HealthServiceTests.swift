import GRPCCore
import GRPCInProcessTransport
import InspectKit
import InspectProtos
import Testing

@Suite("grpc.health.v1.Health")
struct HealthServiceTests {
  static let served = "inspect.test.v1.TestService"

  /// Runs the health service in-process and hands a client to `body`.
  func withHealth(
    _ board: HealthStatusBoard,
    _ body: @Sendable (Grpc_Health_V1_Health.Client<InProcessTransport.Client>) async throws -> Void
  ) async throws {
    let transport = InProcessTransport()
    try await withGRPCServer(transport: transport.server, services: [HealthService(board: board)]) { _ in
      try await withGRPCClient(transport: transport.client) { client in
        try await body(Grpc_Health_V1_Health.Client(wrapping: client))
      }
    }
  }

  @Test("Check reports NOT_SERVING while starting and SERVING once marked ready")
  func checkFollowsTheBoard() async throws {
    let board = HealthStatusBoard(services: [Self.served])
    try await withHealth(board) { health in
      let server = try await health.check(.with { $0.service = "" }).status
      let service = try await health.check(.with { $0.service = Self.served }).status
      #expect(server == .notServing)
      #expect(service == .notServing)
      board.setAll(serving: true)
      let serverAfter = try await health.check(.with { $0.service = "" }).status
      let serviceAfter = try await health.check(.with { $0.service = Self.served }).status
      #expect(serverAfter == .serving)
      #expect(serviceAfter == .serving)
    }
  }

  @Test("Check of a service this server does not have is NOT_FOUND")
  func checkUnknownService() async throws {
    let board = HealthStatusBoard(services: [Self.served])
    try await withHealth(board) { health in
      let error = await #expect(throws: RPCError.self) {
        _ = try await health.check(.with { $0.service = "no.such.Service" })
      }
      #expect(error?.code == .notFound)
      #expect(error?.message.contains("no.such.Service") == true)
    }
  }

  @Test("Watch sends the current status, every change, and ends with NOT_SERVING on drain")
  func watchStreamsChangesAndEndsOnDrain() async throws {
    let board = HealthStatusBoard(services: [Self.served])
    try await withHealth(board) { health in
      let seen = try await health.watch(.with { $0.service = Self.served }) { response in
        var statuses: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = []
        for try await message in response.messages {
          statuses.append(message.status)
          switch statuses.count {
          case 1: board.setAll(serving: true)
          case 2: board.drain()
          default: break
          }
        }
        return statuses
      }
      #expect(seen == [.notServing, .serving, .notServing])
    }
  }

  @Test("Watch of an unknown service reports SERVICE_UNKNOWN and then the status once it is known")
  func watchUnknownService() async throws {
    let board = HealthStatusBoard(services: [])
    try await withHealth(board) { health in
      let seen = try await health.watch(.with { $0.service = "late.Service" }) { response in
        var statuses: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = []
        for try await message in response.messages {
          statuses.append(message.status)
          if statuses.count == 1 { board.set("late.Service", serving: true) }
          if statuses.count == 2 { board.drain() }
        }
        return statuses
      }
      #expect(seen.prefix(2) == [.serviceUnknown, .serving])
    }
  }

  @Test("a Watch started after draining gets NOT_SERVING and ends at once")
  func watchAfterDrain() async throws {
    let board = HealthStatusBoard(services: [Self.served])
    board.drain()
    board.setAll(serving: true)  // ignored: draining is final
    var statuses: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = []
    for await status in board.watch(Self.served) { statuses.append(status) }
    #expect(statuses == [.notServing])
  }
}
