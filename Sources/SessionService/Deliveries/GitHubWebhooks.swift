import Foundation
import GRPCCore
import InspectGitHub
import InspectKit
import InspectProtos
import Logging
import ServiceLifecycle

/// `inspect.session.v1.GitHubWebhookService`: the Gateway hands over each verified delivery;
/// it is stored (so a delivery id is acted on once, and nothing accepted is lost to a restart)
/// and answered at once, then processed by ``WebhookProcessor``.
struct GitHubWebhookRPCService: Inspect_Session_V1_GitHubWebhookService.SimpleServiceProtocol {
  /// GitHub caps deliveries at 25 MB.
  static let maxDeliveryBytes = 25 << 20

  let processor: WebhookProcessor

  func deliverWebhook(
    request: Inspect_Session_V1_DeliverWebhookRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_DeliverWebhookResponse {
    let id = request.deliveryID.trimmingCharacters(in: .whitespaces)
    let event = request.event.trimmingCharacters(in: .whitespaces)
    guard !id.isEmpty, id.count <= 128 else {
      throw RPCError(code: .invalidArgument, message: "the delivery id (X-GitHub-Delivery) is empty or too long")
    }
    guard !event.isEmpty, event.count <= 64 else {
      throw RPCError(code: .invalidArgument, message: "the event name (X-GitHub-Event) is empty or too long")
    }
    guard (try? JSONSerialization.jsonObject(with: request.payload)) is [String: Any] else {
      throw RPCError(code: .invalidArgument, message: "the \(event) delivery's payload is not a JSON object")
    }
    return try await processor.accept(id: id, event: event, payload: request.payload)
  }
}

/// Acts on stored GitHub webhook deliveries (through a ``DeliveryQueue``):
///
/// - `issue_comment` (created, on a pull request, mentioning `@<app slug>`, by a person whose
///   GitHub login belongs to an Inspect user): the comment (without the mention) is queued as a
///   prompt of the session whose pull request it is (the commenter joins it as a collaborator),
///   or of a new session on that pull request's branch.
/// - `pull_request` closed: the session's pull request becomes MERGED or CLOSED (and counts in
///   the stats); the session takes no more prompts.
/// Anything else is recorded as ignored, with the reason.
final class WebhookProcessor: Service, DeliveryHandler {
  static let actedOn: Set<String> = ["issue_comment", "pull_request"]
  /// `comment.author_association` values whose comments may become prompts.
  static let trustedAssociations: Set<String> = ["OWNER", "MEMBER", "COLLABORATOR"]

  let registry: SessionRegistry
  let secrets: SecretsStore
  let settings: GitHubSettings
  let client: GitHubUserClient
  let logger: Logger
  let queue: DeliveryQueue

  init(
    registry: SessionRegistry, secrets: SecretsStore, settings: GitHubSettings, client: GitHubUserClient,
    retryDelay: Duration = .seconds(5), logger: Logger
  ) {
    self.registry = registry
    self.secrets = secrets
    self.settings = settings
    self.client = client
    self.logger = logger
    queue = DeliveryQueue(index: registry.index, source: .github, retryDelay: retryDelay, logger: logger)
  }

  var index: IndexDatabase { registry.index }

  func accept(id: String, event: String, payload: Data) async throws -> Inspect_Session_V1_DeliverWebhookResponse {
    let accepted = Self.actedOn.contains(event)
    // The payload of an event Inspect does not act on is not kept.
    guard
      try await queue.store(
        id: id, event: event, payload: accepted ? payload : Data("{}".utf8), act: accepted,
        ignoredBecause: "Inspect does not act on \(event) events")
    else {
      logger.info("webhook delivery seen before", metadata: ["github.delivery": "\(id)"])
      return .with { $0.duplicate = true }
    }
    return .with { $0.accepted = accepted }
  }

  func run() async throws { await queue.run(self) }

  /// Processes every pending delivery that is due (see ``DeliveryQueue/processPending(_:)``).
  @discardableResult
  func processPending() async -> Date? { await queue.processPending(self) }

  /// Failures worth trying again: GitHub or a peer unreachable, busy or rate limited.
  func isTransient(_ error: any Error) -> Bool {
    switch error {
    case GitHubError.unavailable, GitHubError.rateLimited: true
    case let error as RPCError: [.unavailable, .deadlineExceeded, .resourceExhausted].contains(error.code)
    default: false
    }
  }

  func process(_ delivery: WebhookDeliveryRecord) async throws -> (WebhookDeliveryRecord.State, String) {
    guard let payload = try JSONSerialization.jsonObject(with: delivery.payload) as? [String: Any] else {
      return (.failed, "the payload is not a JSON object")
    }
    switch delivery.event {
    case "issue_comment": return try await issueComment(payload, deliveryID: delivery.id)
    case "pull_request": return try await pullRequest(payload)
    default: return (.ignored, "Inspect does not act on \(delivery.event) events")
    }
  }

  // MARK: - issue_comment

  private func issueComment(
    _ payload: [String: Any], deliveryID: String
  ) async throws -> (WebhookDeliveryRecord.State, String) {
    let action = payload["action"] as? String ?? ""
    guard action == "created" else { return (.ignored, "comment \(action), not created") }
    let issue = payload["issue"] as? [String: Any] ?? [:]
    guard issue["pull_request"] != nil else { return (.ignored, "the comment is on an issue, not a pull request") }
    let sender = payload["sender"] as? [String: Any] ?? [:]
    guard (sender["type"] as? String) != "Bot" else { return (.ignored, "the comment is by a bot") }
    let comment = payload["comment"] as? [String: Any] ?? [:]
    let body = comment["body"] as? String ?? ""
    guard let text = Self.prompt(in: body, mentioning: settings.appSlug) else {
      return (.ignored, "the comment does not mention @\(settings.appSlug)")
    }
    // Only people with a say in the repository may put the app to work (anyone can comment on
    // a public repository's pull requests).
    let association = comment["author_association"] as? String ?? "NONE"
    guard Self.trustedAssociations.contains(association) else {
      return (.ignored, "the commenter is \(association), not an owner, member or collaborator of the repository")
    }
    let login = (comment["user"] as? [String: Any])?["login"] as? String ?? sender["login"] as? String ?? ""
    guard let repository = (payload["repository"] as? [String: Any])?["full_name"] as? String,
      let number = issue["number"] as? Int, (try? RepositoryName(repository)) != nil
    else { return (.failed, "the payload names no repository or pull request number") }
    guard let user = try await index.user(githubLogin: login), !user.disabled else {
      return (.ignored, "GitHub user '\(login)' is not an Inspect user (set their github_login)")
    }
    let key = Self.externalKey(repository: repository, number: number)
    var owner = try await index.session(pullRequest: number, repository: repository)
    if owner == nil { owner = try await index.session(externalKey: key)?.id }
    if let sessionID = owner {
      return try await queue(text, in: sessionID, by: user, deliveryID: deliveryID)
    }
    return try await startSession(
      text, repository: repository, number: number, key: key, by: user, deliveryID: deliveryID)
  }

  /// Queues the comment in the session that owns the pull request.
  private func queue(
    _ text: String, in sessionID: String, by user: UserRecord, deliveryID: String
  ) async throws -> (WebhookDeliveryRecord.State, String) {
    let queued: String? = try await registry.withSession(id: sessionID) { session in
      if await session.role(of: user) == nil {
        _ = try await session.addParticipant(user, role: .collaborator, by: user, checked: false)
      }
      guard await session.role(of: user)?.allows(.collaborator) == true else {
        throw RPCError(code: .permissionDenied, message: "\(user.displayName) is a viewer of \(sessionID)")
      }
      let sent = try await session.sendPrompt(
        text: text, author: user, client: "github", idempotencyKey: "github:\(deliveryID)")
      await registry.scheduleTurns(for: session)
      return sent.prompt.id
    }
    guard let queued else { return (.failed, "session \(sessionID) is gone") }
    return (.done, "queued \(queued) in \(sessionID)")
  }

  /// A pull request no session owns: a new session works on its branch, with its own pull request
  /// recorded as the session's (so no second one is opened).
  private func startSession(
    _ text: String, repository: String, number: Int, key: String, by user: UserRecord, deliveryID: String
  ) async throws -> (WebhookDeliveryRecord.State, String) {
    guard let token = try await secrets.value(.user, owner: user.id, name: "github"), !token.isEmpty else {
      return (
        .failed,
        "\(user.displayName) has no GitHub token (`inspect secrets set github`), so \(repository)#\(number) could not be read"
      )
    }
    let pull = try await client.pullRequest(repository: repository, number: number, token: token)
    guard pull.state == "open" else { return (.ignored, "\(repository)#\(number) is \(pull.state)") }
    guard pull.headRepository == repository else {
      return (
        .failed,
        "\(repository)#\(number) comes from the fork \(pull.headRepository); Inspect pushes only to \(repository)"
      )
    }
    let id = Identifier.make(.session)
    let now = Date()
    let record = SessionRecord(
      id: id, title: "", repository: repository, baseBranch: pull.baseRef, branch: pull.headRef, state: .idle,
      model: "", client: "github", externalKey: key, createdBy: user.id, createdAt: now, updatedAt: now, lastSeq: 0,
      currentTurnId: nil, queuedPrompts: 0)
    let session = try await registry.create(record, creator: user)
    let linked = Inspect_Session_V1_PullRequest.with {
      $0.number = UInt32(clamping: pull.number)
      $0.url = pull.htmlURL
      $0.state = pull.draft ? .draft : .open
      $0.repository = repository
      $0.branch = pull.headRef
    }
    _ = try await registry.withSession(id: session.id) { session in
      try await session.linkPullRequest(linked)
      _ = try await session.sendPrompt(
        text: text, author: user, client: "github", idempotencyKey: "github:\(deliveryID)")
      await registry.scheduleTurns(for: session)
    }
    return (.done, "started \(id) on \(pull.headRef) for \(repository)#\(number)")
  }

  /// The external key of a session started from a comment on `repository`#`number` (GitHub's
  /// names are case-insensitive, the key is lowercase). Clients cannot claim these keys.
  static func externalKey(repository: String, number: Int) -> String {
    "\(externalKeyPrefix)\(repository.lowercased())#\(number)"
  }

  static let externalKeyPrefix = "github:"

  /// The comment's text without the mention of `@slug`; nil when it does not mention it.
  static func prompt(in body: String, mentioning slug: String) -> String? {
    let pattern =
      "(^|[^A-Za-z0-9_-])@" + NSRegularExpression.escapedPattern(for: slug) + "(\\[bot\\])?(?![A-Za-z0-9_-])"
    guard let expression = try? NSRegularExpression(pattern: pattern, options: [.caseInsensitive]) else { return nil }
    let range = NSRange(body.startIndex..., in: body)
    guard expression.firstMatch(in: body, range: range) != nil else { return nil }
    let text = expression.stringByReplacingMatches(in: body, range: range, withTemplate: "$1")
      .replacingOccurrences(of: "[ \t]{2,}", with: " ", options: .regularExpression)
      .trimmingCharacters(in: .whitespacesAndNewlines)
    return text.isEmpty ? nil : text
  }

  // MARK: - pull_request

  private func pullRequest(_ payload: [String: Any]) async throws -> (WebhookDeliveryRecord.State, String) {
    let action = payload["action"] as? String ?? ""
    guard action == "closed" else { return (.ignored, "pull request \(action); Inspect acts on closed") }
    let pull = payload["pull_request"] as? [String: Any] ?? [:]
    guard let repository = (payload["repository"] as? [String: Any])?["full_name"] as? String,
      let number = pull["number"] as? Int ?? payload["number"] as? Int
    else { return (.failed, "the payload names no repository or pull request number") }
    guard let sessionID = try await index.session(pullRequest: number, repository: repository) else {
      return (.ignored, "no session owns \(repository)#\(number)")
    }
    let merged = pull["merged"] as? Bool ?? false
    let event = Inspect_Session_V1_PullRequest.with {
      $0.number = UInt32(clamping: number)
      $0.url = pull["html_url"] as? String ?? ""
      $0.state = merged ? .merged : .closed
      $0.repository = repository
      $0.branch = (pull["head"] as? [String: Any])?["ref"] as? String ?? ""
    }
    let login = ((payload["sender"] as? [String: Any])?["login"] as? String) ?? ""
    let ended: Bool? = try await registry.withSession(id: sessionID) { session in
      let creator = await session.record.createdBy
      var closer = try await index.user(githubLogin: login)
      if closer == nil { closer = try await index.user(id: creator) }
      guard let closer else { return false }
      try await session.pullRequestEnded(event, by: closer)
      return true
    }
    guard ended == true else { return (.failed, "session \(sessionID) is gone") }
    return (.done, "\(repository)#\(number) \(merged ? "merged" : "closed"); session \(sessionID) archived")
  }
}
