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
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await server.serve() }
      let address: SocketAddress?
      do {
        address = try await server.listeningAddress
      } catch {
        // The server could not bind; `serve()` ends with the error that says why.
        try await group.waitForAll()
        throw error
      }
      if let address { await onListening(address) }
      // Wait for the shutdown signal; cancellation ends the wait too.
      try? await gracefulShutdown()
      health.drain()
      await health.waitForWatchersToFinish(timeout: .seconds(1))
      server.beginGracefulShutdown()
      try await group.waitForAll()
    }
  }
}

/// Runs a `GRPCClient`'s connections as a `Service`, closing them gracefully on shutdown.
///
/// A peer that accepted the TCP connection but never answers would hold a graceful close
/// forever, so after `closeTimeout` the connections are cancelled.
public struct GRPCClientService: Service {
  let client: GRPCClient<HTTP2ClientTransport.Posix>
  let closeTimeout: Duration

  public init(client: GRPCClient<HTTP2ClientTransport.Posix>, closeTimeout: Duration = .seconds(5)) {
    self.client = client
    self.closeTimeout = closeTimeout
  }

  public func run() async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await client.runConnections() }
      try? await gracefulShutdown()
      client.beginGracefulShutdown()
      group.addTask { try await Task.sleep(for: closeTimeout) }
      // Whichever ends first: the connections closing, or the timeout.
      try await group.next()
      group.cancelAll()
    }
  }
}

extension GRPCClient where Transport == HTTP2ClientTransport.Posix {
  /// A plaintext HTTP/2 client for a peer service at `address` (a host name or an IP literal),
  /// sending `traceparent` on every call.
  ///
  /// Peers are internal services that restart in seconds, so reconnection backs off from 100 ms
  /// to at most 2 s (gRPC's defaults, 1 s to 2 min, suit remote servers): a peer that comes back
  /// is used again within about 2 s. Calls made while a peer is down fail at once with
  /// UNAVAILABLE rather than wait.
  public static func peer(_ address: HostAndPort) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
    var config = HTTP2ClientTransport.Posix.Config.defaults
    config.backoff = .init(initial: .milliseconds(100), max: .seconds(2), multiplier: 1.6, jitter: 0.2)
    return GRPCClient(
      transport: try .http2NIOPosix(
        target: .dns(host: address.host, port: address.port),
        transportSecurity: .plaintext,
        config: config
      ),
      interceptors: [ClientTracingInterceptor()]
    )
  }
}

/// Runs `action` once the service group begins its graceful shutdown (e.g. to free what the
/// service holds outside its process: sandboxes, mounts).
public struct ShutdownAction: Service {
  let action: @Sendable () async -> Void

  public init(_ action: @escaping @Sendable () async -> Void) { self.action = action }

  public func run() async throws {
    try? await gracefulShutdown()
    await action()
  }
}
