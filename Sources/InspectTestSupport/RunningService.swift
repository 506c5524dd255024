import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import ServiceLifecycle

/// Runs a built service in-process (real HTTP/2 and HTTP servers on 127.0.0.1) for the duration
/// of `body`, then shuts it down gracefully and waits for it to stop.
public func withRunningService<T: Sendable>(
  _ built: BuiltService,
  _ body: @Sendable (ListeningReporter.Addresses) async throws -> T
) async throws -> T {
  let group = built.makeServiceGroup(handleSignals: false)
  return try await withThrowingTaskGroup(of: T?.self) { tasks in
    tasks.addTask {
      try await group.run()
      return nil
    }
    let addresses = await built.host.listening.addresses()
    let result: T
    do {
      result = try await body(addresses)
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
