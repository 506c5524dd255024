import Foundation
import GRPCCore

/// Everything RepoClassifier's RPCs refuse, mapped to gRPC status codes in this one place.
enum ClassifierError: Error, Equatable, RPCErrorConvertible {
  /// `Classify` with neither text nor thread.
  case emptyMessage
  /// `Classify` before any repository is in the catalog.
  case emptyCatalog
  /// A field that must be given was empty.
  case missingField(String)
  /// A repository name that is not `owner/name` (the message says what is wrong).
  case badName(String)
  /// A repository that is not in the catalog.
  case unknownRepo(String)
  /// The catalog file could not be written; the change was not made.
  case notSaved(path: String, reason: String)

  var rpcErrorCode: RPCError.Code {
    switch self {
    case .emptyMessage, .missingField, .badName: .invalidArgument
    case .emptyCatalog: .failedPrecondition
    case .unknownRepo: .notFound
    case .notSaved: .internalError
    }
  }

  var rpcErrorMessage: String {
    switch self {
    case .emptyMessage:
      "text and thread are both empty; send the message's text, its thread, or both"
    case .emptyCatalog:
      "the repository catalog is empty; add repositories with UpsertRepo or start RepoClassifier with "
        + "INSPECT_CLASSIFIER_CATALOG pointing at a catalog file"
    case .missingField(let field):
      "\(field) is empty"
    case .badName(let problem):
      problem
    case .unknownRepo(let name):
      "repository '\(name)' is not in the catalog; add it with UpsertRepo first"
    case .notSaved(let path, let reason):
      "could not save the catalog to \(path) (\(reason)); the change was not made"
    }
  }
}
