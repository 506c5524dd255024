import Foundation
import GRPCCore
import GRPCInProcessTransport
import InspectProtos
import InspectTestSupport

@testable import RepoClassifier

/// A small catalog for classifier tests: two repositories share the hint "deploy" so that a
/// message about deploying matches both equally.
enum ClassifierFixtures {
  static let demo = CatalogEntry(
    name: "local/demo", description: "A small Python calculator with unit tests",
    hints: ["calculator", "unit tests"], aliases: ["calc"], channels: ["#demo"])
  static let web = CatalogEntry(
    name: "acme/web", description: "The React web shop: cart, checkout and account pages",
    hints: ["checkout", "react", "deploy"], aliases: ["webshop"], channels: ["#frontend"])
  static let api = CatalogEntry(
    name: "acme/payments-api", description: "Go service that charges cards and issues refunds",
    hints: ["stripe", "refund", "deploy"], aliases: ["payments"], channels: ["#payments"])
  static let repos = [demo, web, api]

  /// The catalog prepared for scoring, with `choices` as recorded picks.
  static func index(_ repos: [CatalogEntry] = repos, choices: [String: [String: Int]] = [:]) -> CatalogIndex {
    CatalogIndex(CatalogDocument(repos: repos, choices: choices))
  }

  /// `examples/catalog.json` of this checkout.
  static var exampleCatalog: URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("examples/catalog.json")
  }
}

/// The classifier's client type over the in-process transport.
typealias InProcessClassifierClient = Inspect_Classifier_V1_RepoClassifierService.Client<InProcessTransport.Client>

/// Runs `body` with a client of ``RepoClassifierService`` in-process, over a catalog holding
/// `repos` in a temporary directory.
func withClassifier<T: Sendable>(
  _ repos: [CatalogEntry] = ClassifierFixtures.repos,
  rerank: ModelRerank? = nil,
  _ body: @Sendable (InProcessClassifierClient) async throws -> T
) async throws -> T {
  let directory = try TemporaryDirectory()
  defer { directory.remove() }
  let catalog = try RepoCatalog(file: ClassifierPaths(directory.url).catalog)
  for repo in repos { _ = try catalog.upsert(repo) }
  let transport = InProcessTransport()
  let server = GRPCServer(
    transport: transport.server, services: [RepoClassifierService(catalog: catalog, rerank: rerank)])
  return try await withThrowingTaskGroup(of: T?.self) { group in
    group.addTask {
      try await server.serve()
      return nil
    }
    defer {
      server.beginGracefulShutdown()
      group.cancelAll()
    }
    return try await withGRPCClient(transport: transport.client) { client in
      try await body(Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: client))
    }
  }
}

extension Inspect_Classifier_V1_ClassifyRequest {
  static func message(_ text: String, thread: [String] = [], channel: String = "") -> Self {
    .with {
      $0.text = text
      $0.thread = thread
      $0.channel = channel
    }
  }
}
