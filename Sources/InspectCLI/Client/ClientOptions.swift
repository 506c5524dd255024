import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

/// How the CLI reaches Inspect as a client: the Gateway's public gRPC port and an API token.
struct ClientOptions: ParsableArguments {
  @OptionGroup var dataDirectory: DataDirectoryOption

  @Option(
    help:
      "The Gateway's gRPC address (default: from `inspect up`'s run state, else $INSPECT_GATEWAY_ADDR or 127.0.0.1:50050)."
  )
  var gateway: String?

  @Option(help: "API token (default: $INSPECT_TOKEN, else <data-dir>/dev-token).")
  var token: String?

  func gatewayAddress() throws -> HostAndPort {
    let environment = ProcessInfo.processInfo.environment
    if let text = gateway ?? environment["INSPECT_GATEWAY_ADDR"] {
      guard let address = HostAndPort(text) else { throw ValidationError("'\(text)' is not host:port") }
      return address
    }
    if let state = RunState.load(from: dataDirectory.url),
      let entry = state.processes.first(where: { $0.service == .gateway })
    {
      return LaunchPlan.Entry(service: .gateway, grpc: entry.grpc, http: entry.http).reachableGRPC
    }
    return HostAndPort(host: "127.0.0.1", port: InspectService.gateway.defaultGRPCPort)
  }

  func bearer() throws -> Metadata {
    let environment = ProcessInfo.processInfo.environment
    let file = dataDirectory.url.appendingPathComponent("dev-token")
    guard
      let value = token ?? environment["INSPECT_TOKEN"]
        ?? (try? String(contentsOf: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines),
      !value.isEmpty
    else {
      throw ValidationError(
        "no API token: pass --token, set INSPECT_TOKEN, or run `inspect up` (it writes \(file.path))")
    }
    var metadata = Metadata()
    metadata.addString("Bearer \(value)", forKey: "authorization")
    return metadata
  }

  /// Runs `body` with a connection to the Gateway's gRPC port and the bearer metadata.
  func withGateway<T: Sendable>(
    _ body: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>, Metadata) async throws -> T
  ) async throws -> T {
    let address = try gatewayAddress()
    let metadata = try bearer()
    return try await withGRPCClient(
      transport: .http2NIOPosix(target: .dns(host: address.host, port: address.port), transportSecurity: .plaintext)
    ) { client in try await body(client, metadata) }
  }

  /// Runs `body` with a SessionService client through the Gateway.
  func withSessions<T: Sendable>(
    _ body: @Sendable (Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix>, Metadata) async throws -> T
  ) async throws -> T {
    try await withGateway { client, metadata in try await body(.init(wrapping: client), metadata) }
  }

  /// Runs `body` with a UserService client through the Gateway.
  func withUsers<T: Sendable>(
    _ body: @Sendable (Inspect_Session_V1_UserService.Client<HTTP2ClientTransport.Posix>, Metadata) async throws -> T
  ) async throws -> T {
    try await withGateway { client, metadata in try await body(.init(wrapping: client), metadata) }
  }
}
