import Foundation
import GRPCCore
import InspectKit
import InspectProtos

extension RepoClassifierApp {
  /// The variable naming the catalog file that seeds the catalog.
  static let catalogVariable = "INSPECT_CLASSIFIER_CATALOG"

  /// Opens the catalog under `<data-dir>/classifier/` (seeded from `$INSPECT_CLASSIFIER_CATALOG`)
  /// and builds the service.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    try await build(configuration, environment: ProcessInfo.processInfo.environment)
  }

  /// ``build(_:)`` with the environment given, so tests can point at a seed file. A malformed
  /// catalog file, or a seed file that does not exist, fails here with a message naming it.
  static func build(_ configuration: ServiceConfiguration, environment: [String: String]) async throws -> BuiltService {
    let host = ServiceHost(
      configuration: configuration, servedServices: [Inspect_Classifier_V1_RepoClassifierService.descriptor])
    let paths = ClassifierPaths(configuration.dataDirectory)
    let seed = environment[catalogVariable].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
    let catalog = try RepoCatalog(file: paths.catalog, seed: seed)
    host.logger.info(
      "catalog loaded",
      metadata: [
        "catalog.file": "\(paths.catalog.path)", "catalog.seed": "\(seed?.path ?? "")",
        "catalog.repos": "\(catalog.repos.count)",
      ])
    return BuiltService(
      host: host,
      grpcServer: try host.makeGRPCServer(services: [RepoClassifierService(catalog: catalog)]),
      httpServer: host.makeHTTPServer(router: host.makeRouter()))
  }
}

/// Where RepoClassifier keeps its files under the data directory.
struct ClassifierPaths {
  let root: URL
  init(_ dataDirectory: URL) { root = dataDirectory.appendingPathComponent("classifier", isDirectory: true) }
  /// The catalog and the channel picks (``CatalogDocument``); also the default seed.
  var catalog: URL { root.appendingPathComponent("catalog.json") }
}
