import Foundation
import GRPCCore
import InspectProtos
import Logging

/// `inspect.classifier.v1.RepoClassifierService`: the repository catalog and the classification
/// of a message (with its thread and channel) to a repository: lexical, with an optional model
/// rerank (``ModelRerank``) when the words alone are not certain. A model failure is logged and
/// the lexical ranking stands, so `Classify` never fails because of a model.
struct RepoClassifierService: Inspect_Classifier_V1_RepoClassifierService.SimpleServiceProtocol {
  let catalog: RepoCatalog
  var rerank: ModelRerank?
  var thresholds = LexicalScorer.Thresholds.standard
  var logger = Logger(label: "inspect.classifier")

  // MARK: - Classify

  func classify(
    request: Inspect_Classifier_V1_ClassifyRequest, context: ServerContext
  ) async throws -> Inspect_Classifier_V1_ClassifyResponse {
    let blank = { (text: String) in text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
    guard !blank(request.text) || !request.thread.allSatisfy(blank) else { throw ClassifierError.emptyMessage }
    let index = catalog.index
    guard !index.repos.isEmpty else { throw ClassifierError.emptyCatalog }
    let (ranking, rerankedBy) = await Self.rank(
      text: request.text, thread: request.thread, channel: request.channel, in: index, thresholds: thresholds,
      rerank: rerank, logger: logger)
    return .with {
      $0.rerankedBy = rerankedBy
      $0.candidates = ranking.candidates.map { candidate in
        .with {
          $0.repo = candidate.repo
          $0.score = candidate.score
          $0.reason = candidate.reason
        }
      }
      $0.decision = ranking.decision.proto
      $0.unknownRepos = ranking.unknownRepos
    }
  }

  /// The lexical ranking, reranked by the model when there is one and the words alone are
  /// AMBIGUOUS; with the model that reranked it (empty when none did).
  static func rank(
    text: String, thread: [String], channel: String, in index: CatalogIndex, thresholds: LexicalScorer.Thresholds,
    rerank: ModelRerank?, logger: Logger
  ) async -> (ranking: LexicalScorer.Ranking, rerankedBy: String) {
    let ranking = LexicalScorer.rank(text: text, thread: thread, channel: channel, in: index, thresholds: thresholds)
    // Only AMBIGUOUS rankings are reranked: CONFIDENT needs no help, and NONE (nothing said
    // enough) must not be talked into a repository.
    guard let rerank, ranking.decision == .ambiguous, !ranking.candidates.isEmpty else { return (ranking, "") }
    let (reranked, failure) = await rerank.rerank(ranking, text: text, thread: thread, channel: channel, index: index)
    guard let failure else {
      var reranked = reranked
      // A repository named that the catalog lacks: the model may reorder, never start at once.
      if !reranked.unknownRepos.isEmpty, reranked.decision == .confident { reranked.decision = .ambiguous }
      return (reranked, rerank.model.isEmpty ? "classify" : rerank.model)
    }
    if !Task.isCancelled {
      logger.warning(
        "the rerank model's answer was not used; the lexical ranking stands",
        metadata: ["model": "\(rerank.model.isEmpty ? "classify" : rerank.model)", "error": "\(failure)"])
    }
    return (ranking, "")
  }

  // MARK: - Catalog

  func listRepos(
    request: Inspect_Classifier_V1_ListReposRequest, context: ServerContext
  ) async throws -> Inspect_Classifier_V1_ListReposResponse {
    .with { $0.repos = catalog.repos.map(\.proto) }
  }

  func upsertRepo(
    request: Inspect_Classifier_V1_UpsertRepoRequest, context: ServerContext
  ) async throws -> Inspect_Classifier_V1_UpsertRepoResponse {
    let entry = CatalogEntry(proto: request.repo)
    let created = try catalog.upsert(entry)
    return .with {
      $0.repo = entry.proto
      $0.created = created
    }
  }

  func deleteRepo(
    request: Inspect_Classifier_V1_DeleteRepoRequest, context: ServerContext
  ) async throws -> Inspect_Classifier_V1_DeleteRepoResponse {
    let entry = try catalog.delete(request.name.trimmingCharacters(in: .whitespacesAndNewlines))
    return .with { $0.repo = entry.proto }
  }

  func recordChoice(
    request: Inspect_Classifier_V1_RecordChoiceRequest, context: ServerContext
  ) async throws -> Inspect_Classifier_V1_RecordChoiceResponse {
    try catalog.recordChoice(channel: request.channel, repo: request.repo)
    return .init()
  }
}

extension LexicalScorer.Decision {
  var proto: Inspect_Classifier_V1_Decision {
    switch self {
    case .confident: .confident
    case .ambiguous: .ambiguous
    case .none: .none
    }
  }
}
