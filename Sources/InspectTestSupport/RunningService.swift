import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import ServiceLifecycle

/// Runs `group` for the duration of `body`, then shuts it down gracefully and waits for it to
/// stop — also when `body` throws. `onGroupEnd` runs when the group stops, however it stops (so
/// a body waiting for the group to be ready can stop waiting if it failed to start).
public func withServiceGroup<T: Sendable>(
  _ group: ServiceGroup, onGroupEnd: @escaping @Sendable () -> Void = {},
  _ body: @Sendable () async throws -> T
) async throws -> T {
  try await withThrowingTaskGroup(of: Void.self) { tasks in
    tasks.addTask {
      defer { onGroupEnd() }
      try await group.run()
    }
    let result: T
    do {
      result = try await body()
    } catch {
      await group.triggerGracefulShutdown()
      try? await tasks.waitForAll()
      throw error
    }
    await group.triggerGracefulShutdown()
    try await tasks.waitForAll()
    return result
  }
}

/// Runs a built service in-process (real HTTP/2 and HTTP servers on 127.0.0.1) for the duration
/// of `body`, then shuts it down gracefully and waits for it to stop.
public func withRunningService<T: Sendable>(
  _ built: BuiltService,
  _ body: @Sendable (ListeningReporter.Addresses) async throws -> T
) async throws -> T {
  try await withServiceGroup(built.makeServiceGroup(handleSignals: false)) {
    try await body(await built.host.listening.addresses())
  }
}

/// A configuration for an in-process service on free loopback ports with its own data directory.
public func testConfiguration(
  _ service: InspectService, dataDirectory: URL, peers: PeerAddresses = PeerAddresses()
) -> ServiceConfiguration {
  ServiceConfiguration(
    service: service, host: "127.0.0.1", grpcPort: 0, httpPort: 0, dataDirectory: dataDirectory,
    logLevel: .warning, peers: peers)
}

/// Runs `body` with a gRPC client connected to `address` over plaintext HTTP/2.
public func withClient<T: Sendable>(
  _ address: HostAndPort,
  _ body: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> T
) async throws -> T {
  try await withGRPCClient(
    transport: .http2NIOPosix(target: .dns(host: address.host, port: address.port), transportSecurity: .plaintext),
    handleClient: body)
}
