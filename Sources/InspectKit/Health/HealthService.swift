import GRPCCore
import InspectProtos

/// The standard `grpc.health.v1.Health` service, answered from a ``HealthStatusBoard``, so that
/// grpc_health_probe, Kubernetes and any gRPC client can probe every Inspect port.
public struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
  let board: HealthStatusBoard

  public init(board: HealthStatusBoard) {
    self.board = board
  }

  /// Errors: NOT_FOUND when the named service is not served here.
  public func check(
    request: Grpc_Health_V1_HealthCheckRequest,
    context: ServerContext
  ) async throws -> Grpc_Health_V1_HealthCheckResponse {
    guard let status = board.status(of: request.service) else {
      throw RPCError(code: .notFound, message: "this server has no service named '\(request.service)'")
    }
    return .with { $0.status = status }
  }

  /// Streams the status now and on every change; ends when the server drains for shutdown.
  public func watch(
    request: Grpc_Health_V1_HealthCheckRequest,
    response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
    context: ServerContext
  ) async throws {
    try await board.whileWatching {
      let updates = board.watch(request.service)
      try await untilRPCCancelled {
        for await status in updates {
          try await response.write(.with { $0.status = status })
        }
      }
    }
  }
}
