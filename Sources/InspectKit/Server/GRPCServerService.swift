import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle

/// Runs a `GRPCServer` as a swift-service-lifecycle `Service`.
///
/// On graceful shutdown it first drains the health board (NOT_SERVING, `Watch` streams end), then
/// stops accepting RPCs and waits for the in-flight ones to finish.
public struct GRPCServerService: Service {
  let server: GRPCServer<HTTP2ServerTransport.Posix>
  let health: HealthStatusBoard
  let onListening: @Sendable (SocketAddress) async -> Void

  public init(
    server: GRPCServer<HTTP2ServerTransport.Posix>,
    health: HealthStatusBoard,
    onListening: @escaping @Sendable (SocketAddress) async -> Void
  ) {
    self.server = server
    self.health = health
    self.onListening = onListening
  }

  public func run() async throws {
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await server.serve() }
      if let address = try await server.listeningAddress {
        await onListening(address)
      }
      // Wait for the shutdown signal; cancellation ends the wait too.
      try? await gracefulShutdown()
      health.drain()
      server.beginGracefulShutdown()
    }
  }
}

/// Runs a `GRPCClient`'s connections as a `Service`, closing them gracefully on shutdown.
public struct GRPCClientService: Service {
  let client: GRPCClient<HTTP2ClientTransport.Posix>

  public init(client: GRPCClient<HTTP2ClientTransport.Posix>) {
    self.client = client
  }

  public func run() async throws {
    try await withGracefulShutdownHandler {
      try await client.runConnections()
    } onGracefulShutdown: {
      client.beginGracefulShutdown()
    }
  }
}

extension GRPCClient where Transport == HTTP2ClientTransport.Posix {
  /// A plaintext HTTP/2 client for a peer service at `address` (a host name or an IP literal),
  /// sending `traceparent` on every call.
  public static func peer(_ address: HostAndPort) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
    GRPCClient(
      transport: try .http2NIOPosix(
        target: .dns(host: address.host, port: address.port),
        transportSecurity: .plaintext
      ),
      interceptors: [ClientTracingInterceptor()]
    )
  }
}
