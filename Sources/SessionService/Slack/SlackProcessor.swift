import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos
import Logging
import ServiceLifecycle

/// Which repository a Slack message is about (RepoClassifier), and the choices people make.
protocol RepositoryClassifying: Sendable {
  func classify(text: String, thread: [String], channel: String) async throws -> Inspect_Classifier_V1_ClassifyResponse
  func recordChoice(channel: String, repository: String, text: String, userID: String) async throws
}

/// RepoClassifier over gRPC.
struct RepoClassifierClient: RepositoryClassifying {
  let client: Inspect_Classifier_V1_RepoClassifierService.Client<HTTP2ClientTransport.Posix>

  /// The rerank may take up to its own deadline (1.5 s by default); a little more than that.
  static let options: CallOptions = {
    var options = CallOptions.defaults
    options.timeout = .seconds(5)
    return options
  }()

  func classify(text: String, thread: [String], channel: String) async throws -> Inspect_Classifier_V1_ClassifyResponse
  {
    try await client.classify(
      .with {
        $0.text = text
        $0.thread = thread
        $0.channel = channel
      }, options: Self.options)
  }

  func recordChoice(channel: String, repository: String, text: String, userID: String) async throws {
    _ = try await client.recordChoice(
      .with {
        $0.channel = channel
        $0.repo = repository
        $0.text = text
        $0.userID = userID
      }, options: Self.options)
  }
}

/// `inspect.session.v1.SlackService`: the Gateway hands over each verified request; it is stored
/// under its id (Slack's retries carry the same `event_id`, so they are recognised) and answered
/// at once, then acted on by ``SlackProcessor``.
struct SlackRPCService: Inspect_Session_V1_SlackService.SimpleServiceProtocol {
  let processor: SlackProcessor

  func deliverSlack(
    request: Inspect_Session_V1_DeliverSlackRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_DeliverSlackResponse {
    guard let kind = SlackProcessor.Kind(rawValue: request.kind) else {
      throw RPCError(code: .invalidArgument, message: "kind '\(request.kind)' is not 'event' or 'interaction'")
    }
    let id = request.id.trimmingCharacters(in: .whitespaces)
    guard !id.isEmpty, id.count <= 200 else {
      throw RPCError(code: .invalidArgument, message: "the \(kind.rawValue)'s id is empty or too long")
    }
    guard let payload = try? JSONValue.decode(request.payload), payload.objectValue != nil else {
      throw RPCError(code: .invalidArgument, message: "the \(kind.rawValue)'s payload is not a JSON object")
    }
    return try await processor.accept(kind: kind, id: id, payload: payload, bytes: request.payload)
  }
}

/// Acts on Slack's requests (through a ``DeliveryQueue``):
///
/// - A mention (`app_mention`, or any message in a direct conversation) in a thread without a
///   session: the person is found among Inspect's users by their Slack profile's email, the
///   thread's earlier messages (`conversations.replies`) are read, and RepoClassifier names the
///   repository from the message, the thread and the channel. When it is sure, a session starts
///   there (its external key is the thread's); otherwise a message asks with a button per
///   candidate.
/// - A later message of a thread with a session: queued there as a follow-up (when it mentions
///   the app, or always when `INSPECT_SLACK_REQUIRE_MENTION=false`).
/// - Buttons: choosing a repository starts the session and is recorded with RepoClassifier (it
///   updates the channel's priors); Stop stops the running turn; Open in Inspect is a link.
/// Bots' messages are never acted on. Whatever fails is said in the thread.
final class SlackProcessor: Service, DeliveryHandler {
  enum Kind: String, Sendable {
    case event, interaction
  }

  /// Button `action_id`s.
  static let stopAction = "inspect_stop"
  static let openAction = "inspect_open"
  static let repositoryActionPrefix = "inspect_repo_"
  /// Earlier messages of a thread given to the classifier and the prompt: at most this many,
  /// newest kept, and at most this many characters in all.
  static let contextMessages = 30
  static let contextCharacters = 6000
  /// Pages of `conversations.replies` read at most.
  static let contextPages = 10

  let registry: SessionRegistry
  let settings: SlackSettings
  let client: SlackWebClient
  let poster: SlackPoster
  let classifier: any RepositoryClassifying
  let progress: SlackProgress
  let logger: Logger
  let queue: DeliveryQueue

  init(
    registry: SessionRegistry, settings: SlackSettings, classifier: any RepositoryClassifying,
    sessionURL: @escaping @Sendable (String) -> String, retryDelay: Duration = .seconds(5), logger: Logger
  ) {
    self.registry = registry
    self.settings = settings
    client = SlackWebClient(settings: settings)
    poster = SlackPoster(client: client, interval: settings.minInterval, logger: logger)
    self.classifier = classifier
    progress = SlackProgress(
      registry: registry, poster: poster, sessionURL: sessionURL, tick: settings.progressTick, logger: logger)
    self.logger = logger
    queue = DeliveryQueue(index: registry.index, source: .slack, retryDelay: retryDelay, logger: logger)
  }

  var index: IndexDatabase { registry.index }

  // MARK: - Accepting

  func accept(
    kind: Kind, id: String, payload: JSONValue, bytes: Data
  ) async throws -> Inspect_Session_V1_DeliverSlackResponse {
    var ignored = kind == .event ? Self.ignoredEvent(payload) : Self.ignoredInteraction(payload)
    if ignored == nil, settings.botToken?.isEmpty != false {
      ignored = "Slack is not configured on SessionService: set INSPECT_SLACK_BOT_TOKEN"
    }
    let stored = try await queue.store(
      id: "\(DeliverySource.slackPrefix)\(kind.rawValue):\(id)", event: "slack.\(kind.rawValue)",
      payload: ignored == nil ? bytes : Data("{}".utf8), act: ignored == nil, ignoredBecause: ignored ?? "")
    guard stored else {
      logger.info("Slack request seen before", metadata: ["slack.id": "\(id)"])
      return .with { $0.duplicate = true }
    }
    return .with { $0.accepted = ignored == nil }
  }

  /// Why an event is not acted on (nil: it is).
  static func ignoredEvent(_ envelope: JSONValue) -> String? {
    guard let event = envelope["event"] else { return "the envelope has no event" }
    let type = event["type"]?.stringValue ?? ""
    guard type == "app_mention" || type == "message" else { return "Inspect does not act on \(type) events" }
    if event["bot_id"] != nil || event["subtype"]?.stringValue == "bot_message" { return "a bot's message" }
    if let subtype = event["subtype"]?.stringValue, !["thread_broadcast", "file_share"].contains(subtype) {
      return "a \(subtype) message"
    }
    if type == "message", event["channel_type"]?.stringValue != "im", event["thread_ts"] == nil {
      // Channel messages matter only as follow-ups in a thread; their text is not kept.
      return "a channel message outside a thread"
    }
    return nil
  }

  static func ignoredInteraction(_ payload: JSONValue) -> String? {
    let type = payload["type"]?.stringValue ?? ""
    return type == "block_actions" ? nil : "Inspect does not act on \(type) interactions"
  }

  // MARK: - Processing

  func run() async throws {
    await withTaskGroup(of: Void.self) { group in
      group.addTask { await self.progress.resume() }
      group.addTask { await self.queue.run(self) }
    }
  }

  /// Processes every pending request that is due (see ``DeliveryQueue/processPending(_:)``).
  @discardableResult
  func processPending() async -> Date? { await queue.processPending(self) }

  func isTransient(_ error: any Error) -> Bool {
    switch error {
    case SlackError.rateLimited, SlackError.unavailable: true
    case let error as RPCError: [.unavailable, .deadlineExceeded, .resourceExhausted].contains(error.code)
    default: false
    }
  }

  func retryAfter(_ error: any Error) -> TimeInterval? {
    if case SlackError.rateLimited(let seconds, _) = error { TimeInterval(seconds) } else { nil }
  }

  /// Requests of one thread are acted on in order; threads do not wait for each other.
  func serialKey(_ delivery: WebhookDeliveryRecord) -> String? {
    guard let payload = try? JSONValue.decode(delivery.payload) else { return nil }
    if let event = payload["event"], let channel = event["channel"]?.stringValue {
      return "\(channel):\(event["thread_ts"]?.stringValue ?? event["ts"]?.stringValue ?? "")"
    }
    guard let channel = payload["channel"]?["id"]?.stringValue ?? payload["container"]?["channel_id"]?.stringValue
    else { return nil }
    let thread =
      payload["message"]?["thread_ts"]?.stringValue ?? payload["container"]?["thread_ts"]?.stringValue
      ?? payload["container"]?["message_ts"]?.stringValue ?? ""
    return "\(channel):\(thread)"
  }

  func process(_ delivery: WebhookDeliveryRecord) async throws -> (WebhookDeliveryRecord.State, String) {
    let payload = try JSONValue.decode(delivery.payload)
    switch delivery.event {
    case "slack.event": return try await event(payload)
    case "slack.interaction": return try await interaction(payload)
    default: return (.ignored, "not a Slack request")
    }
  }

  /// A request that failed for good is answered in its thread, so that nothing dies silently.
  func failedForGood(_ delivery: WebhookDeliveryRecord, outcome: String) async {
    guard let payload = try? JSONValue.decode(delivery.payload) else { return }
    let event = payload["event"]
    let channel = event?["channel"]?.stringValue ?? payload["channel"]?["id"]?.stringValue
    let thread =
      event.flatMap { $0["thread_ts"]?.stringValue ?? $0["ts"]?.stringValue }
      ?? payload["container"]?["thread_ts"]?.stringValue ?? payload["container"]?["message_ts"]?.stringValue
    guard let channel, let thread else { return }
    _ = try? await poster.post(
      channel: channel, thread: thread, text: ":x: Inspect could not act on this: \(SlackText.escape(outcome))")
  }

  // MARK: - Events

  private func event(_ envelope: JSONValue) async throws -> (WebhookDeliveryRecord.State, String) {
    if let reason = Self.ignoredEvent(envelope) { return (.ignored, reason) }
    guard let event = envelope["event"], let channel = event["channel"]?.stringValue,
      let ts = event["ts"]?.stringValue, let slackUser = event["user"]?.stringValue
    else { return (.failed, "the event names no channel, ts or user") }
    let team = envelope["team_id"]?.stringValue ?? event["team"]?.stringValue ?? ""
    let threadTs = event["thread_ts"]?.stringValue
    let inThread = threadTs != nil && threadTs != ts
    let root = threadTs ?? ts
    let key = Self.externalKey(team: team, channel: channel, thread: root)
    let text = event["text"]?.stringValue ?? ""
    let botUser = envelope["authorizations"]?.arrayValue?.first?["user_id"]?.stringValue
    let isDirect = event["channel_type"]?.stringValue == "im"
    let mentions = event["type"]?.stringValue == "app_mention" || (botUser.map { text.contains("<@\($0)") } ?? false)
    let existing = try await index.session(externalKey: key)

    if event["type"]?.stringValue == "message" && !isDirect {
      // Channel messages matter only as follow-ups in a session's thread; mentions come (also)
      // as app_mention, which acts on them.
      guard inThread, existing != nil else { return (.ignored, "a channel message outside a session's thread") }
      guard !mentions else { return (.ignored, "a mention: its app_mention event acts on it") }
      guard !settings.requireMention else { return (.ignored, "follow-ups must mention the app") }
    }
    // Only someone who spoke to the app (a mention, a direct message) is answered when their
    // message cannot be acted on; chatter in a followed thread is passed over quietly.
    let addressed = mentions || isDirect
    let prompt = Self.stripMentions(text, of: botUser)
    guard !prompt.isEmpty else {
      if addressed {
        _ = try await poster.post(
          channel: channel, thread: root,
          text: "Tell me what to change, e.g. _@Inspect the checkout test is flaky, fix it_.")
      }
      return (.ignored, "the message says nothing but the mention")
    }
    guard let user = try await inspectUser(slackUser, team: team) else {
      if addressed {
        _ = try await poster.post(
          channel: channel, thread: root,
          text:
            "<@\(slackUser)> is not an Inspect user yet: an Inspect admin adds you with the email of your Slack "
            + "profile (`inspect admin users add \"Your Name\" --email you@example.com`), then mention me again.")
      }
      return (.ignored, "Slack user \(slackUser) is not an Inspect user of this workspace")
    }
    let idempotencyKey = "slack:\(channel):\(ts)"
    if let existing {
      return try await followUp(
        prompt, in: existing.id, by: user, idempotencyKey: idempotencyKey, channel: channel, root: root)
    }
    if let thread = try await index.slackThread(key: key), thread.questionTs != nil, thread.sessionId == nil {
      return (.ignored, "the thread's question about the repository is not answered yet")
    }
    let context = inThread ? try await threadContext(channel: channel, root: root, before: ts) : []
    let channelName = await self.channelName(channel)
    let ranking = try await classifier.classify(text: prompt, thread: context, channel: channelName)
    var thread = SlackThreadRecord(
      key: key, channel: channel, threadTs: root, requestUser: slackUser, requestTs: ts,
      requestText: Self.promptText(prompt, context: context), channelName: channelName)
    if ranking.decision == .confident, let best = ranking.candidates.first {
      let id = try await start(&thread, repository: best.repo, by: user)
      return (.done, "started \(id) in \(best.repo) (\(best.reason))")
    }
    return try await ask(&thread, ranking: ranking)
  }

  /// Queues a later message of the thread in its session.
  private func followUp(
    _ text: String, in sessionID: String, by user: UserRecord, idempotencyKey: String, channel: String, root: String
  ) async throws -> (WebhookDeliveryRecord.State, String) {
    do {
      let queued: String? = try await registry.withSession(id: sessionID) { session in
        if await session.role(of: user) == nil {
          _ = try await session.addParticipant(user, role: .collaborator, by: user, checked: false)
        }
        guard await session.role(of: user)?.allows(.collaborator) == true else {
          throw RPCError(code: .permissionDenied, message: "\(user.displayName) is a viewer of this session")
        }
        let sent = try await session.sendPrompt(
          text: text, author: user, client: "slack", idempotencyKey: idempotencyKey)
        await registry.scheduleTurns(for: session)
        return sent.prompt.id
      }
      guard let queued else { return (.failed, "session \(sessionID) is gone") }
      await progress.follow(sessionID)
      return (.done, "queued \(queued) in \(sessionID)")
    } catch let error as RPCError where [.failedPrecondition, .permissionDenied].contains(error.code) {
      _ = try await poster.post(channel: channel, thread: root, text: ":warning: \(SlackText.escape(error.message))")
      return (.ignored, error.message)
    }
  }

  /// Asks which repository, with a button for each candidate.
  private func ask(
    _ thread: inout SlackThreadRecord, ranking: Inspect_Classifier_V1_ClassifyResponse
  ) async throws -> (WebhookDeliveryRecord.State, String) {
    let candidates = Array(ranking.candidates.prefix(4))
    // A repository named that the catalog does not have: say so, rather than ask to name one.
    // NONE: the message itself named it; otherwise only the thread did.
    let unknownCount = ranking.unknownRepos.count
    var unknown = ranking.unknownRepos.prefix(3).map { "`\(SlackText.escape($0))`" }.joined(separator: ", ")
    if unknownCount > 3 { unknown += " and \(unknownCount - 3) more" }
    let notInCatalog =
      unknownCount == 0
      ? ""
      : ranking.decision == .none
        ? "\(unknown) \(unknownCount == 1 ? "is" : "are") not in my catalog, so I can't work there "
          + "(an Inspect administrator can add \(unknownCount == 1 ? "it" : "them") with `inspect catalog set`). "
        : "This thread mentions \(unknown), which \(unknownCount == 1 ? "is" : "are") not in my catalog. "
    guard !candidates.isEmpty else {
      let text =
        notInCatalog.isEmpty
        ? "I couldn't tell which repository this is about, and none in my catalog looks close. "
          + "Mention me again naming the repository (`owner/name`)."
        : notInCatalog + "Mention me again naming a repository I know if you meant another one."
      _ = try await poster.post(channel: thread.channel, thread: thread.threadTs, text: text)
      return (.done, "no repository fits; asked to name one")
    }
    let text =
      notInCatalog.isEmpty
      ? ranking.decision == .none
        ? "I couldn't tell which repository this is about. Is it one of these? If not, mention me again naming it."
        : "Which repository is this about? Choose one and I'll start."
      : ranking.decision == .none
        ? notInCatalog + "If you meant one of these, choose it:"
        : notInCatalog + "Which repository is this about? Choose one and I'll start."
    let blocks = SlackText.question(text, candidates: candidates)
    let ts = try await poster.post(channel: thread.channel, thread: thread.threadTs, text: text, blocks: blocks)
    thread.questionTs = ts
    try await index.saveSlackThread(thread)
    return (.done, "asked which repository (\(ranking.decision)): \(candidates.map(\.repo).joined(separator: ", "))")
  }

  /// Starts the thread's session in `repository` with the request as its first prompt.
  ///
  /// Every step can be taken again: a retry after a partial success (the session created, its
  /// prompt not sent yet) finishes the work without a second session or prompt. The thread's
  /// record (with the request and its context) is saved before the session exists, so the
  /// reporter always finds it.
  private func start(_ thread: inout SlackThreadRecord, repository: String, by user: UserRecord) async throws -> String
  {
    thread.following = true
    try await index.saveSlackThread(thread)
    let id: String
    if let existing = try await index.session(externalKey: thread.key) {
      id = existing.id
    } else {
      id = Identifier.make(.session)
      let now = Date()
      let record = SessionRecord(
        id: id, title: "", repository: repository, baseBranch: "main", branch: "inspect/\(id)", state: .idle,
        model: settings.model, client: "slack", externalKey: thread.key, createdBy: user.id, createdAt: now,
        updatedAt: now, lastSeq: 0, currentTurnId: nil, queuedPrompts: 0)
      _ = try await registry.create(record, creator: user)
    }
    thread.sessionId = id
    try await index.saveSlackThread(thread)
    let text = thread.requestText
    let idempotencyKey = "slack:\(thread.channel):\(thread.requestTs)"
    _ = try await registry.withSession(id: id) { session in
      _ = try await session.sendPrompt(text: text, author: user, client: "slack", idempotencyKey: idempotencyKey)
      await registry.scheduleTurns(for: session)
    }
    await progress.follow(id)
    return id
  }

  // MARK: - Interactions

  private func interaction(_ payload: JSONValue) async throws -> (WebhookDeliveryRecord.State, String) {
    guard let action = payload["actions"]?.arrayValue?.first, let actionID = action["action_id"]?.stringValue else {
      return (.ignored, "no action")
    }
    guard let slackUser = payload["user"]?["id"]?.stringValue,
      let channel = payload["channel"]?["id"]?.stringValue ?? payload["container"]?["channel_id"]?.stringValue,
      let messageTs = payload["container"]?["message_ts"]?.stringValue ?? payload["message"]?["ts"]?.stringValue
    else { return (.failed, "the interaction names no user, channel or message") }
    let threadTs = payload["message"]?["thread_ts"]?.stringValue ?? payload["container"]?["thread_ts"]?.stringValue
    let value = action["value"]?.stringValue ?? ""
    let team = payload["team"]?["id"]?.stringValue ?? payload["user"]?["team_id"]?.stringValue ?? ""
    switch actionID {
    case Self.openAction:
      return (.ignored, "a link button")
    case Self.stopAction:
      return try await stop(
        sessionID: value, slackUser: slackUser, team: team, channel: channel, thread: threadTs ?? messageTs)
    case let id where id.hasPrefix(Self.repositoryActionPrefix):
      return try await choose(
        repository: value, slackUser: slackUser, team: team, channel: channel, questionTs: messageTs)
    default:
      return (.ignored, "Inspect has no button '\(actionID)'")
    }
  }

  private func stop(
    sessionID: String, slackUser: String, team: String, channel: String, thread: String
  ) async throws -> (WebhookDeliveryRecord.State, String) {
    // The button stops the session of this channel's thread, whatever its value says.
    guard let record = try await index.session(id: sessionID),
      record.externalKey?.hasPrefix("\(Self.externalKeyPrefix)\(team):\(channel):") == true
    else { return (.ignored, "session \(sessionID) is not a session of a thread in \(channel)") }
    guard let user = try await inspectUser(slackUser, team: team) else {
      _ = try await poster.post(
        channel: channel, thread: thread, text: "<@\(slackUser)> is not an Inspect user, so cannot stop this session.")
      return (.ignored, "Slack user \(slackUser) is not an Inspect user")
    }
    let outcome: (Bool, String)? =
      try await registry.withSession(id: sessionID) { session in
        guard await session.role(of: user)?.allows(.collaborator) == true else { return nil }
        let stopped = try await session.stop(
          by: user, reason: "stopped from Slack by \(user.displayName)", clearQueue: false)
        return (stopped.wasRunning, stopped.turnID)
      } ?? nil
    guard let outcome else {
      _ = try await poster.post(
        channel: channel, thread: thread,
        text: "<@\(slackUser)> cannot stop this session: only its owner and collaborators can.")
      return (.ignored, "\(user.displayName) may not stop \(sessionID)")
    }
    let (wasRunning, turnID) = outcome
    return (.done, wasRunning ? "stopped \(turnID) of \(sessionID)" : "nothing was running in \(sessionID)")
  }

  private func choose(
    repository: String, slackUser: String, team: String, channel: String, questionTs: String
  ) async throws -> (WebhookDeliveryRecord.State, String) {
    guard var thread = try await index.slackThread(channel: channel, questionTs: questionTs) else {
      return (.ignored, "no question of Inspect's is message \(questionTs)")
    }
    guard let chooser = try await inspectUser(slackUser, team: team) else {
      _ = try await poster.post(
        channel: channel, thread: thread.threadTs, text: "<@\(slackUser)> is not an Inspect user, so cannot choose.")
      return (.ignored, "Slack user \(slackUser) is not an Inspect user")
    }
    // The session is the asker's: their request, their pull request.
    let requester = try await inspectUser(thread.requestUser, team: team) ?? chooser
    if thread.sessionId != nil {
      // Chosen before: finish what a failed attempt may have left undone, nothing more.
      let id = try await start(&thread, repository: repository, by: requester)
      return (.ignored, "the thread's session \(id) already started")
    }
    let id = try await start(&thread, repository: repository, by: requester)
    await poster.update(
      channel: channel, ts: questionTs, text: "Working in \(SlackText.escape(repository)), chosen by <@\(slackUser)>.",
      blocks: [SlackText.section("Working in *\(SlackText.escape(repository))*, chosen by <@\(slackUser)>.")])
    do {
      try await classifier.recordChoice(
        channel: thread.channelName, repository: repository, text: thread.requestText, userID: chooser.id)
    } catch {
      logger.warning("the repository choice could not be recorded", metadata: ["error": "\(error)"])
    }
    return (.done, "started \(id) in \(repository), chosen by \(chooser.displayName)")
  }

  // MARK: - Slack lookups

  /// The Inspect user whose email is the Slack user's profile email, for a member of the
  /// workspace `team` only: a guest from another organisation in a shared channel (whose profile
  /// that organisation controls), a deleted account or a bot is nobody.
  private func inspectUser(_ slackUser: String, team: String) async throws -> UserRecord? {
    let info = try await client.call("users.info", ["user": .string(slackUser)])
    guard let user = info["user"], user["is_bot"]?.boolValue != true, user["deleted"]?.boolValue != true,
      user["is_stranger"]?.boolValue != true, let email = user["profile"]?["email"]?.stringValue
    else { return nil }
    if let home = user["team_id"]?.stringValue, !team.isEmpty, home != team { return nil }
    return try await index.user(email: email)
  }

  /// The channel's name as `#name` (its id when Slack does not say, e.g. direct messages).
  private func channelName(_ channel: String) async -> String {
    guard let info = try? await client.call("conversations.info", ["channel": .string(channel)]),
      let name = info["channel"]?["name"]?.stringValue, !name.isEmpty
    else { return channel }
    return "#" + name
  }

  /// The text of the thread's earlier messages (people's, not bots'), oldest first: Slack pages
  /// a thread oldest first, so every page is read (at most ``contextPages``) to keep the newest.
  private func threadContext(channel: String, root: String, before ts: String) async throws -> [String] {
    var texts: [String] = []
    var cursor = ""
    for _ in 0..<Self.contextPages {
      var arguments: [String: JSONValue] = ["channel": .string(channel), "ts": .string(root), "limit": 200]
      if !cursor.isEmpty { arguments["cursor"] = .string(cursor) }
      let answer = try await client.call("conversations.replies", arguments)
      for message in answer["messages"]?.arrayValue ?? [] {
        guard message["bot_id"] == nil, message["subtype"]?.stringValue != "bot_message",
          let text = message["text"]?.stringValue, !text.isEmpty, let at = message["ts"]?.stringValue,
          Double(at) ?? 0 < Double(ts) ?? 0
        else { continue }
        let author = message["user"]?.stringValue.map { "<@\($0)>" } ?? "someone"
        texts.append("\(author): \(text)")
      }
      cursor = answer["response_metadata"]?["next_cursor"]?.stringValue ?? ""
      guard answer["has_more"]?.boolValue == true, !cursor.isEmpty else { break }
    }
    var kept: [String] = []
    var characters = 0
    for text in texts.suffix(Self.contextMessages).reversed() {
      guard characters + text.count <= Self.contextCharacters else { break }
      characters += text.count
      kept.insert(text, at: 0)
    }
    return kept
  }

  // MARK: - Text

  /// `slack:<team>:<channel>:<thread ts>`.
  static func externalKey(team: String, channel: String, thread: String) -> String {
    "\(externalKeyPrefix)\(team):\(channel):\(thread)"
  }

  static let externalKeyPrefix = "slack:"

  /// The text without mentions of the app (`<@U123>` or `<@U123|name>`), trimmed.
  static func stripMentions(_ text: String, of botUser: String?) -> String {
    var pattern = "<@[A-Z0-9]+(\\|[^>]*)?>"
    if let botUser { pattern = "<@" + NSRegularExpression.escapedPattern(for: botUser) + "(\\|[^>]*)?>" }
    return text.replacingOccurrences(of: pattern, with: "", options: .regularExpression)
      .replacingOccurrences(of: "[ \t]{2,}", with: " ", options: .regularExpression)
      .trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// The prompt: the request, then the thread's earlier messages as context.
  static func promptText(_ request: String, context: [String]) -> String {
    guard !context.isEmpty else { return request }
    return request + "\n\nEarlier in the Slack thread (oldest first):\n"
      + context.map { "> " + $0.replacingOccurrences(of: "\n", with: "\n> ") }.joined(separator: "\n")
  }
}
