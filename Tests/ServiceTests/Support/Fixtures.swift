import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos
import InspectTestSupport

@testable import Gateway
@testable import ModelRouter
@testable import RepoClassifier
@testable import SandboxService
@testable import SessionService

/// Builds any of the five services for an in-process test.
func buildService(_ service: InspectService, configuration: ServiceConfiguration) async throws -> BuiltService {
  switch service {
  case .gateway: try await GatewayApp.build(configuration)
  case .session: try await SessionServiceApp.build(configuration)
  case .sandbox: try await SandboxServiceApp.build(configuration)
  case .modelRouter: try await ModelRouterApp.build(configuration)
  case .classifier: try await RepoClassifierApp.build(configuration)
  }
}

/// A running SessionService and a Gateway in front of it, with the development token.
struct GatewayStack: Sendable {
  var gateway: ListeningReporter.Addresses
  var session: ListeningReporter.Addresses
  var token: String
  var dataDirectory: URL

  var http: HTTPTestClient { HTTPTestClient(gateway.http) }

  func authorized(_ extra: [String: String] = [:]) -> [String: String] {
    extra.merging(["Authorization": "Bearer \(token)"]) { $1 }
  }

  /// Metadata carrying the development token, for the Gateway's gRPC port.
  var tokenMetadata: Metadata {
    var metadata = Metadata()
    metadata.addString("Bearer \(token)", forKey: "authorization")
    return metadata
  }
}

/// Runs SessionService and a Gateway pointed at it, both in-process on free loopback ports.
func withGatewayStack<T: Sendable>(_ body: @Sendable (GatewayStack) async throws -> T) async throws -> T {
  let directory = try TemporaryDirectory()
  defer { directory.remove() }
  let session = try await SessionServiceApp.build(testConfiguration(.session, dataDirectory: directory.url))
  return try await withRunningService(session) { sessionAddresses in
    let peers = PeerAddresses(addresses: [.session: sessionAddresses.grpc])
    let gateway = try await GatewayApp.build(testConfiguration(.gateway, dataDirectory: directory.url, peers: peers))
    return try await withRunningService(gateway) { gatewayAddresses in
      let token = try String(contentsOf: directory.url.appendingPathComponent("dev-token"), encoding: .utf8)
        .trimmingCharacters(in: .whitespacesAndNewlines)
      return try await body(
        GatewayStack(gateway: gatewayAddresses, session: sessionAddresses, token: token, dataDirectory: directory.url))
    }
  }
}

/// The value of one Prometheus sample line (`name{labels} value`), or 0 when it is absent.
func metricValue(_ text: String, _ sample: String) -> Double {
  for line in text.split(separator: "\n") where line.hasPrefix(sample + " ") {
    return Double(line.dropFirst(sample.count + 1)) ?? .nan
  }
  return 0
}
