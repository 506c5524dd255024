import GRPCCore

/// Why a model call failed, as callers see it: a gRPC status plus the trailing metadata entry
/// `inspect-model-error` naming the type (`docs/CONTRACTS.md`, "Generate"). Every failure of
/// ModelRouter passes through here, so the code for each type is decided in one place.
struct ModelError: Error, RPCErrorConvertible, CustomStringConvertible {
  /// The value of `inspect-model-error`.
  enum Kind: String, Sendable {
    case rateLimited = "rate_limited"
    case overloaded
    case contextTooLong = "context_too_long"
    case authentication
    case invalidRequest = "invalid_request"
    case unavailable
    case noProvider = "no_provider"
  }

  /// The trailing metadata key that names the error type.
  static let metadataKey = "inspect-model-error"

  var kind: Kind
  var code: RPCError.Code
  var message: String
  /// Whether trying the same call again later can succeed (rate limits, overload, outages — not
  /// bad credentials, bad requests or a used-up quota).
  var retryable = false
  /// How long the provider asked to wait (`retry-after`, `retry-after-ms`), if it said.
  var retryAfter: Duration?
  /// Refused by an open circuit breaker (``ProviderGate``): not retried on the same provider,
  /// but the route may fall back to another model.
  var circuitOpen = false

  /// Whether the failure says the provider is down (unreachable, failing, overloaded), which
  /// counts towards opening its circuit breaker; rate limits and refused requests do not.
  var countsAsOutage: Bool { !circuitOpen && (kind == .unavailable || kind == .overloaded) }

  var rpcErrorCode: RPCError.Code { code }
  var rpcErrorMessage: String { message }
  var rpcErrorMetadata: Metadata { [Self.metadataKey: .string(kind.rawValue)] }
  var description: String { "\(kind.rawValue) (\(code)): \(message)" }

  /// Text longer than this is cut when quoted in a message, to keep statuses readable.
  static let quoteLimit = 400

  /// `text` in double quotes, cut at ``quoteLimit`` characters.
  static func quote(_ text: String) -> String {
    let cut = text.count > quoteLimit ? String(text.prefix(quoteLimit)) + "…" : text
    return "\"\(cut)\""
  }

  // MARK: - The types and their codes

  /// The provider rate-limited us (RESOURCE_EXHAUSTED).
  static func rateLimited(_ message: String, retryable: Bool = true) -> ModelError {
    ModelError(kind: .rateLimited, code: .resourceExhausted, message: message, retryable: retryable)
  }

  /// The provider is overloaded (UNAVAILABLE).
  static func overloaded(_ message: String) -> ModelError {
    ModelError(kind: .overloaded, code: .unavailable, message: message, retryable: true)
  }

  /// The conversation does not fit the model's context window (INVALID_ARGUMENT).
  static func contextTooLong(_ message: String) -> ModelError {
    ModelError(kind: .contextTooLong, code: .invalidArgument, message: message)
  }

  /// The provider rejected the configured credentials (UNAUTHENTICATED).
  static func authentication(_ message: String) -> ModelError {
    ModelError(kind: .authentication, code: .unauthenticated, message: message)
  }

  /// The request cannot be served as it is (INVALID_ARGUMENT unless `code` says otherwise,
  /// e.g. FAILED_PRECONDITION when a scripted transcript does not match the conversation).
  static func invalidRequest(_ message: String, code: RPCError.Code = .invalidArgument) -> ModelError {
    ModelError(kind: .invalidRequest, code: code, message: message)
  }

  /// The provider could not be reached or failed (UNAVAILABLE).
  static func unavailable(_ message: String) -> ModelError {
    ModelError(kind: .unavailable, code: .unavailable, message: message, retryable: true)
  }

  /// A provider's circuit breaker is open (UNAVAILABLE, `unavailable`).
  static func circuitOpen(_ message: String) -> ModelError {
    ModelError(kind: .unavailable, code: .unavailable, message: message, retryable: true, circuitOpen: true)
  }

  /// The same error with the wait the provider asked for.
  func waiting(_ duration: Duration?) -> ModelError {
    var copy = self
    copy.retryAfter = duration
    return copy
  }

  /// No provider serves the model: NOT_FOUND when the name is unknown, FAILED_PRECONDITION when
  /// configuration is missing.
  static func noProvider(_ message: String, code: RPCError.Code = .notFound) -> ModelError {
    ModelError(kind: .noProvider, code: code, message: message)
  }
}
