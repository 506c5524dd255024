import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import ServiceLifecycle

extension RepoClassifierApp {
  /// The variable naming the catalog file that seeds the catalog.
  static let catalogVariable = "INSPECT_CLASSIFIER_CATALOG"
  /// `off` (the default), `on` (ModelRouter routes the `classify` task) or a model name: the
  /// rerank of rankings the words alone do not decide.
  static let rerankVariable = "INSPECT_CLASSIFIER_RERANK"
  /// Milliseconds the rerank may take before the lexical ranking stands (default 1500). A
  /// caller's deadline should leave more than this, or it ends before the lexical answer.
  static let rerankTimeoutVariable = "INSPECT_CLASSIFIER_RERANK_TIMEOUT_MS"

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
    let catalog = try RepoCatalog(file: paths.catalog, seed: seed, legacy: paths.legacyCatalog)
    host.logger.info(
      "catalog loaded",
      metadata: [
        "catalog.file": "\(paths.catalog.path)", "catalog.seed": "\(seed?.path ?? "")",
        "catalog.repos": "\(catalog.repos.count)",
      ])
    var service = RepoClassifierService(
      catalog: catalog, thresholds: try thresholds(environment), logger: host.logger)
    var dependencies: [any Service] = []
    if let model = try rerankModel(environment) {
      let timeout = Duration.milliseconds(try environment.wholeNumber(rerankTimeoutVariable, in: 100...60_000) ?? 1500)
      let client = try GRPCClient.peer(configuration.peers[.modelRouter])
      dependencies.append(GRPCClientService(client: client))
      service.rerank = ModelRerank(
        model: model, timeout: timeout,
        ask: ModelRerank.asking(Inspect_Model_V1_ModelRouterService.Client(wrapping: client), timeout: timeout))
      host.logger.info(
        "model rerank on",
        metadata: [
          "model": "\(model.isEmpty ? "classify" : model)", "timeout": "\(timeout)",
          "modelrouter": "\(configuration.peers[.modelRouter])",
        ])
    }
    host.logger.info(
      "thresholds",
      metadata: [
        "confident_points": "\(service.thresholds.confidentMinimum)",
        "confident_lead": "\(service.thresholds.confidentLead)",
        "minimum_points": "\(service.thresholds.minimumPoints)",
      ])
    return BuiltService(
      host: host,
      grpcServer: try host.makeGRPCServer(services: [service]),
      httpServer: host.makeHTTPServer(router: host.makeRouter()),
      dependencies: dependencies)
  }
}

extension RepoClassifierApp {
  /// The rerank's model from `INSPECT_CLASSIFIER_RERANK`: nil when off (unset, `off`, `false`,
  /// `no`, `0`), empty for ModelRouter's `classify` route (`on`, `true`, `yes`, `1`), else a
  /// `provider:model` name; anything else stops the service naming the variable.
  static func rerankModel(_ environment: [String: String]) throws -> String? {
    let value = environment[rerankVariable]?.trimmingCharacters(in: .whitespaces) ?? ""
    switch value.lowercased() {
    case "", "off", "false", "no", "0": return nil
    case "on", "true", "yes", "1": return ""
    default:
      guard let colon = value.firstIndex(of: ":"), colon != value.startIndex,
        value.index(after: colon) != value.endIndex
      else {
        throw SettingsError(
          message: "\(rerankVariable)='\(value)' is neither on, off nor a model name such as openai:gpt-4.1-mini")
      }
      return value
    }
  }

  /// The decision's thresholds, each from its variable when set (a value out of range stops the
  /// service at start, naming the variable).
  static func thresholds(_ environment: [String: String]) throws -> LexicalScorer.Thresholds {
    var thresholds = LexicalScorer.Thresholds.standard
    func number(_ name: String, in range: ClosedRange<Double>) throws -> Double? {
      guard let text = environment[name]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
      guard let value = Double(text), range.contains(value) else {
        throw SettingsError(message: "\(name)='\(text)' is not a number in \(range.lowerBound)...\(range.upperBound)")
      }
      return value
    }
    if let value = try number("INSPECT_CLASSIFIER_CONFIDENT_POINTS", in: 0...100) {
      thresholds.confidentMinimum = value
    }
    if let value = try number("INSPECT_CLASSIFIER_CONFIDENT_LEAD", in: 0.01...1) { thresholds.confidentLead = value }
    if let value = try number("INSPECT_CLASSIFIER_MINIMUM_POINTS", in: 0...100) { thresholds.minimumPoints = value }
    guard thresholds.minimumPoints <= thresholds.confidentMinimum else {
      throw SettingsError(
        message: "INSPECT_CLASSIFIER_MINIMUM_POINTS (\(thresholds.minimumPoints)) is above "
          + "INSPECT_CLASSIFIER_CONFIDENT_POINTS (\(thresholds.confidentMinimum))")
    }
    return thresholds
  }
}

/// Where RepoClassifier keeps its files under the data directory.
struct ClassifierPaths {
  let root: URL
  init(_ dataDirectory: URL) { root = dataDirectory.appendingPathComponent("classifier", isDirectory: true) }
  /// The catalog and the channel picks (``RepoCatalog``).
  var catalog: URL { root.appendingPathComponent("catalog.sqlite") }
  /// Where earlier versions kept the catalog (a ``CatalogDocument``); taken into a new database.
  var legacyCatalog: URL { root.appendingPathComponent("catalog.json") }
}
