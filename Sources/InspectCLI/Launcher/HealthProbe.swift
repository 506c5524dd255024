import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// Asks a running service how it is: `grpc.health.v1.Health/Check` on its gRPC port and
/// `/healthz` on its HTTP port (for the version).
enum HealthProbe {
  /// The gRPC health status of the whole server at `address`, or nil when it does not answer.
  static func grpcStatus(
    _ address: HostAndPort, timeout: Duration = .seconds(5)
  ) async -> Grpc_Health_V1_HealthCheckResponse.ServingStatus? {
    do {
      return try await withGRPCClient(
        transport: .http2NIOPosix(target: .dns(host: address.host, port: address.port), transportSecurity: .plaintext)
      ) { client in
        var options = CallOptions.defaults
        options.timeout = timeout
        options.waitForReady = false
        return try await Grpc_Health_V1_Health.Client(wrapping: client).check(.init(), options: options).status
      }
    } catch {
      return nil
    }
  }

  /// What `/healthz` says (service name and version), or nil when it does not answer.
  static func healthz(_ address: HostAndPort, timeout: TimeInterval = 5) async -> HealthReport? {
    guard let url = URL(string: "http://\(address)/healthz") else { return nil }
    var request = URLRequest(url: url)
    request.timeoutInterval = timeout
    guard let (data, response) = try? await URLSession.shared.data(for: request),
      (response as? HTTPURLResponse)?.statusCode == 200
    else { return nil }
    return try? JSONDecoder().decode(HealthReport.self, from: data)
  }
}
