import Foundation
import GRPCCore
import InspectKit
import InspectProtos

/// `inspect.session.v1.SessionService`: sessions, their prompt queues and their live event
/// streams. Every call acts for ``InspectCaller/userID``.
struct SessionRPCService: Inspect_Session_V1_SessionService.SimpleServiceProtocol {
  let registry: SessionRegistry
  var index: IndexDatabase { registry.index }
  var settings: SessionSettings { registry.settings }

  // MARK: - Sessions

  func createSession(
    request: Inspect_Session_V1_CreateSessionRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_CreateSessionResponse {
    let caller = try await requireCaller()
    let repository = request.repository.trimmingCharacters(in: .whitespaces)
    guard Self.isRepositoryName(repository) else {
      throw RPCError(
        code: .invalidArgument, message: "repository '\(request.repository)' is not 'owner/name' (e.g. local/demo)")
    }
    try checkPromptText(request.prompt, required: false)
    try PromptAttachments.check(request.attachments)
    if !request.attachments.isEmpty, request.prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
      throw RPCError(code: .invalidArgument, message: "attachments need a prompt to go with")
    }
    try Self.checkPermissionRules(request.permissionRules)
    for prefix in [WebhookProcessor.externalKeyPrefix, SlackProcessor.externalKeyPrefix]
    where request.externalKey.hasPrefix(prefix) {
      throw RPCError(
        code: .invalidArgument,
        message:
          "external keys starting with '\(prefix)' are Inspect's own (sessions started from GitHub comments and "
          + "Slack threads); use another prefix")
    }
    if !request.externalKey.isEmpty, let existing = try await index.session(externalKey: request.externalKey) {
      // Someone else in the same thread or pull request joins the session as a collaborator.
      let response: Inspect_Session_V1_CreateSessionResponse? = try await registry.withSession(id: existing.id) {
        session in
        if await session.role(of: caller) == nil {
          _ = try await session.addParticipant(caller, role: .collaborator, by: caller, checked: false)
        }
        guard await session.role(of: caller)?.allows(.collaborator) == true else {
          throw RPCError(
            code: .permissionDenied,
            message: "\(caller.displayName) is a viewer of \(existing.id), which this external key names")
        }
        return try await respond(
          session: session, created: false, prompt: request.prompt, attachments: request.attachments, caller: caller,
          client: request.client)
      }
      if let response { return response }
    }
    var parent: SessionRecord?
    var inherited: [ParticipantRecord] = []
    var rules: [Inspect_Session_V1_PermissionRule] = []
    if !request.parentSessionID.isEmpty {
      (parent, inherited, rules) = try await withAccess(
        request.parentSessionID, caller: caller, needs: .collaborator
      ) { session in
        // The parent's rules, oldest first, so that they keep their order (newest wins).
        (await session.record, await session.participantList, Array(try await session.permissionRules().reversed()))
      }
      if let parent, parent.depth + 1 > settings.maxChildDepth {
        throw RPCError(
          code: .resourceExhausted,
          message:
            "session \(parent.id) is at depth \(parent.depth); child sessions may nest at most \(settings.maxChildDepth) deep"
        )
      }
    }
    let id = Identifier.make(.session)
    let now = Date()
    var participants = inherited.map {
      ParticipantRecord(sessionId: id, userId: $0.userId, role: $0.role, joinedAt: now, addedBy: caller.id)
    }
    for spec in request.participants {
      guard let role = Role(proto: spec.role) else {
        throw RPCError(
          code: .invalidArgument, message: "participant \(spec.userID) has no role (owner, collaborator or viewer)")
      }
      guard try await index.user(id: spec.userID) != nil else {
        throw RPCError(code: .notFound, message: "no user with id '\(spec.userID)' to add as a participant")
      }
      participants.removeAll { $0.userId == spec.userID }
      participants.append(
        ParticipantRecord(sessionId: id, userId: spec.userID, role: role, joinedAt: now, addedBy: caller.id))
    }
    var record = SessionRecord(
      id: id, title: request.title, repository: repository,
      baseBranch: request.baseBranch.isEmpty ? (parent?.baseBranch ?? "main") : request.baseBranch,
      branch: "inspect/\(id)", state: .idle, model: request.model, client: request.client,
      externalKey: request.externalKey.isEmpty ? nil : request.externalKey,
      createdBy: caller.id, createdAt: now, updatedAt: now, lastSeq: 0, currentTurnId: nil, queuedPrompts: 0)
    record.parentId = parent?.id
    record.depth = (parent?.depth ?? -1) + 1
    _ = try await registry.create(record, creator: caller, participants: participants)
    // Stored newest last and matched newest first: the request's rules are stored in reverse, so
    // that its first rule is matched first, as in a policy file.
    rules += request.permissionRules.reversed().map { rule in
      var rule = rule
      rule.setBy = caller.ref
      return rule
    }
    let response: Inspect_Session_V1_CreateSessionResponse? = try await registry.withSession(id: id) { session in
      try await session.addPermissionRules(rules)
      return try await respond(
        session: session, created: true, prompt: request.prompt, attachments: request.attachments, caller: caller,
        client: request.client)
    }
    guard let response else { throw RPCError(code: .internalError, message: "session \(id) vanished after creation") }
    return response
  }

  private func respond(
    session: SessionActor, created: Bool, prompt: String, attachments: [Inspect_Session_V1_Attachment],
    caller: UserRecord, client: String
  ) async throws -> Inspect_Session_V1_CreateSessionResponse {
    var response = Inspect_Session_V1_CreateSessionResponse()
    response.created = created
    if !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
      let queued = try await session.sendPrompt(
        text: prompt, author: caller, client: client, idempotencyKey: nil, attachments: attachments)
      response.promptID = queued.prompt.id
      response.queuePosition = UInt32(queued.position)
      await registry.scheduleTurns(for: session)
    }
    response.session = try await proto(of: session)
    return response
  }

  func getSession(
    request: Inspect_Session_V1_GetSessionRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_GetSessionResponse {
    let caller = try await requireCaller()
    return try await withAccess(request.sessionID, caller: caller, needs: .viewer) { session in
      let queued = try await session.queuedPrompts()
      let proto = try await proto(of: session)
      return .with {
        $0.session = proto
        $0.queuedPrompts = queued.enumerated().map { position, prompt in
          prompt.proto(sessionID: session.id, position: position + 1)
        }
      }
    }
  }

  func listSessions(
    request: Inspect_Session_V1_ListSessionsRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_ListSessionsResponse {
    let caller = try await requireCaller()
    if !request.pageToken.isEmpty, !Identifier.isValid(request.pageToken, kind: .session) {
      throw RPCError(
        code: .invalidArgument, message: "page_token '\(request.pageToken)' is not one this service issued")
    }
    let size = request.pageSize == 0 ? 50 : Int(min(request.pageSize, 500))
    let states = request.states.compactMap(SessionRecord.State.init(proto:))
    // People see the sessions they take part in; administrators see every session.
    var participants = caller.isAdmin ? [] : [caller.id]
    if !request.participantUserID.isEmpty { participants.append(request.participantUserID) }
    let records = try await index.sessions(
      before: request.pageToken.isEmpty ? nil : request.pageToken, limit: size + 1,
      repository: request.repository.isEmpty ? nil : request.repository, states: states,
      externalKey: request.externalKey.isEmpty ? nil : request.externalKey,
      parentId: request.parentSessionID.isEmpty ? nil : request.parentSessionID, participants: participants)
    var creators: [String: UserRecord] = [:]
    for id in Set(records.map(\.createdBy)) { creators[id] = try await index.user(id: id) }
    return .with {
      $0.sessions = records.prefix(size).map { $0.proto(creator: creators[$0.createdBy]) }
      if records.count > size, let last = records.prefix(size).last { $0.nextPageToken = last.id }
    }
  }

  // MARK: - Prompts

  func sendPrompt(
    request: Inspect_Session_V1_SendPromptRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_SendPromptResponse {
    let caller = try await requireCaller()
    try checkPromptText(request.text, required: true)
    try PromptAttachments.check(request.attachments)
    return try await withAccess(request.sessionID, caller: caller, needs: .collaborator) { session in
      let queued = try await session.sendPrompt(
        text: request.text, author: caller, client: request.client, idempotencyKey: request.idempotencyKey,
        attachments: request.attachments)
      await registry.scheduleTurns(for: session)
      return .with {
        $0.promptID = queued.prompt.id
        $0.queuePosition = UInt32(queued.position)
        $0.seq = queued.seq
      }
    }
  }

  func editQueuedPrompt(
    request: Inspect_Session_V1_EditQueuedPromptRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_EditQueuedPromptResponse {
    let caller = try await requireCaller()
    try checkPromptText(request.text, required: true)
    return try await withAccess(request.sessionID, caller: caller, needs: .collaborator) { session in
      let (prompt, position) = try await session.editQueuedPrompt(request.promptID, text: request.text, by: caller)
      return .with { $0.prompt = prompt.proto(sessionID: session.id, position: position) }
    }
  }

  func cancelQueuedPrompt(
    request: Inspect_Session_V1_CancelQueuedPromptRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_CancelQueuedPromptResponse {
    let caller = try await requireCaller()
    return try await withAccess(request.sessionID, caller: caller, needs: .collaborator) { session in
      let prompt = try await session.cancelQueuedPrompt(request.promptID, by: caller)
      return .with { $0.prompt = prompt.proto(sessionID: session.id, position: 0) }
    }
  }

  func stopSession(
    request: Inspect_Session_V1_StopSessionRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_StopSessionResponse {
    let caller = try await requireCaller()
    return try await withAccess(request.sessionID, caller: caller, needs: .collaborator) { session in
      let stopped = try await session.stop(by: caller, reason: request.reason, clearQueue: request.clearQueue_p)
      return .with {
        $0.wasRunning = stopped.wasRunning
        $0.turnID = stopped.turnID
        $0.cancelledPrompts = UInt32(stopped.cancelledPrompts)
      }
    }
  }

  func decideToolCall(
    request: Inspect_Session_V1_DecideToolCallRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_DecideToolCallResponse {
    let caller = try await requireCaller()
    guard !request.toolCallID.isEmpty else {
      throw RPCError(code: .invalidArgument, message: "tool_call_id is empty; name the tool call to decide on")
    }
    return try await withAccess(request.sessionID, caller: caller, needs: .collaborator) { session in
      try await session.decide(
        by: caller, toolCallID: request.toolCallID, approved: request.approved, reason: request.reason,
        remember: request.remember)
      return .init()
    }
  }

  // MARK: - Participants and presence

  func addParticipant(
    request: Inspect_Session_V1_AddParticipantRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_AddParticipantResponse {
    let caller = try await requireCaller()
    guard let role = Role(proto: request.role) else {
      throw RPCError(code: .invalidArgument, message: "role is required: owner, collaborator or viewer")
    }
    let userID = request.userID.isEmpty ? caller.id : request.userID
    guard let user = try await index.user(id: userID) else {
      throw RPCError(code: .notFound, message: "no user with id '\(userID)'")
    }
    let added: Inspect_Session_V1_Participant? = try await registry.withSession(id: request.sessionID) { session in
      // Joining needs only the id; for anything else a non-member finds no session.
      let joining = user.id == caller.id && role == .viewer
      let callerRole = await session.role(of: caller)
      guard joining || callerRole != nil else { throw Self.notFound(request.sessionID) }
      let participant = try await session.addParticipant(user, role: role, by: caller)
      var adder: UserRecord?
      if let addedBy = participant.addedBy { adder = try await index.user(id: addedBy) }
      return participant.proto(user: user, addedBy: adder)
    }
    guard let added else { throw Self.notFound(request.sessionID) }
    return .with { $0.participant = added }
  }

  func removeParticipant(
    request: Inspect_Session_V1_RemoveParticipantRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_RemoveParticipantResponse {
    let caller = try await requireCaller()
    let userID = request.userID.isEmpty ? caller.id : request.userID
    return try await withAccess(request.sessionID, caller: caller, needs: .viewer) { session in
      guard let user = try await index.user(id: userID) else {
        throw RPCError(code: .notFound, message: "no user with id '\(userID)'")
      }
      try await session.removeParticipant(user, by: caller)
      return Inspect_Session_V1_RemoveParticipantResponse()
    }
  }

  func updatePresence(
    request: Inspect_Session_V1_UpdatePresenceRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_UpdatePresenceResponse {
    let caller = try await requireCaller()
    guard request.state != .unspecified, case .some = Inspect_Session_V1_PresenceState(rawValue: request.state.rawValue)
    else {
      throw RPCError(code: .invalidArgument, message: "state is required: online, typing, idle or offline")
    }
    return try await withAccess(request.sessionID, caller: caller, needs: .viewer) { session in
      try await session.updatePresence(caller, request.state, client: request.client)
      return Inspect_Session_V1_UpdatePresenceResponse()
    }
  }

  // MARK: - The live stream

  func subscribe(
    request: Inspect_Session_V1_SubscribeRequest,
    response: RPCWriter<Inspect_Session_V1_SubscribeResponse>,
    context: ServerContext
  ) async throws {
    let caller = try await requireCaller()
    try await withAccess(request.sessionID, caller: caller, needs: .viewer) { session in
      let (subscription, replayThrough) = try await session.subscribe(after: request.afterSeq)
      await session.startWatching(caller)
      do {
        // Ends when the subscriber leaves, the service shuts down, or the subscriber is cut off.
        try await untilRPCCancelled {
          // Stored events first, in pages; everything newer is already queued in the subscription.
          var cursor = request.afterSeq
          while cursor < replayThrough {
            let page = try await session.database.events(after: cursor, through: replayThrough, limit: 2000)
            guard let last = page.last else { break }
            try await response.write(.with { $0.events = page })
            cursor = last.seq
          }
          while let item = await subscription.next() {
            switch item {
            case .events(let events):
              try await response.write(.with { $0.events = events })
            case .resync(let afterSeq):
              try await response.write(.with { $0.resync = .with { $0.afterSeq = afterSeq } })
            }
          }
        }
      } catch {
        await session.unsubscribe(subscription)
        await session.stopWatching(caller)
        throw error
      }
      await session.unsubscribe(subscription)
      await session.stopWatching(caller)
    }
  }

  // MARK: - Repositories

  func registerRepository(
    request: Inspect_Session_V1_RegisterRepositoryRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_RegisterRepositoryResponse {
    let caller = try await requireCaller()
    let name = request.repository.trimmingCharacters(in: .whitespaces)
    guard Self.isRepositoryName(name) else {
      throw RPCError(
        code: .invalidArgument, message: "repository '\(request.repository)' is not 'owner/name' (e.g. acme/web)")
    }
    let mirror = try await registry.runner.mirror(repository: name)
    let (record, created) = try await index.register(
      repository: name, defaultBranch: mirror.defaultBranch, headCommit: mirror.headCommit, by: caller.id)
    let registeredBy = created ? caller : try await index.user(id: record.registeredBy)
    return .with {
      $0.repository = record.proto(registeredBy: registeredBy)
      $0.created = created
    }
  }

  func listRepositories(
    request: Inspect_Session_V1_ListRepositoriesRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_ListRepositoriesResponse {
    _ = try await requireCaller()
    var users: [String: UserRecord] = [:]
    var listed: [Inspect_Session_V1_RegisteredRepository] = []
    for record in try await index.repositories() {
      if users[record.registeredBy] == nil {
        users[record.registeredBy] = try await index.user(id: record.registeredBy)
      }
      listed.append(record.proto(registeredBy: users[record.registeredBy]))
    }
    return .with { $0.repositories = listed }
  }

  // MARK: - Diff

  func getDiff(
    request: Inspect_Session_V1_GetDiffRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_GetDiffResponse {
    let caller = try await requireCaller()
    let (repository, base, branch) = try await withAccess(request.sessionID, caller: caller, needs: .viewer) {
      session in
      let record = await session.record
      return (record.repository, record.baseBranch, record.branch)
    }
    let diff = try await registry.runner.compareBranches(
      repository: repository, base: base, head: branch, maxPatchBytes: request.maxPatchBytes)
    return .with {
      $0.baseBranch = base
      $0.branch = branch
      $0.diff = diff
    }
  }

  // MARK: - Stats

  func getStats(
    request: Inspect_Session_V1_GetStatsRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_GetStatsResponse {
    _ = try await requireCaller()
    let window = request.hasActiveWindow ? request.activeWindow.timeInterval : 5 * 60
    guard window >= 0 else {
      throw RPCError(code: .invalidArgument, message: "active_window must not be negative")
    }
    let repository = request.repository.trimmingCharacters(in: .whitespaces)
    if !repository.isEmpty, !Self.isRepositoryName(repository) {
      throw RPCError(code: .invalidArgument, message: "repository '\(request.repository)' is not 'owner/name'")
    }
    let since = request.hasSince ? request.since.date : Date().addingTimeInterval(-7 * 24 * 3600)
    let stats = try await index.stats(repository: repository.isEmpty ? nil : repository, since: since, window: window)
    return .with { $0.stats = stats }
  }

  // MARK: - Prewarm

  /// Someone started writing a prompt: SandboxService gets a sandbox of the repository ready
  /// (for an existing session, the restore of its newest snapshot, which its next turn takes).
  func prewarm(
    request: Inspect_Session_V1_PrewarmRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_PrewarmResponse {
    let caller = try await requireCaller()
    var repository = request.repository.trimmingCharacters(in: .whitespaces)
    if !request.sessionID.isEmpty {
      let sessionRepository = try await withAccess(request.sessionID, caller: caller, needs: .collaborator) {
        await $0.record.repository
      }
      guard repository.isEmpty || repository == sessionRepository else {
        throw RPCError(
          code: .invalidArgument,
          message: "session \(request.sessionID) is about \(sessionRepository), not \(repository)")
      }
      repository = sessionRepository
    }
    guard Self.isRepositoryName(repository) else {
      throw RPCError(code: .invalidArgument, message: "repository must be owner/name, got '\(request.repository)'")
    }
    try await registry.runner.prewarm(repository: repository, sessionID: request.sessionID)
    return .init()
  }

  // MARK: - Artifacts

  func listArtifacts(
    request: Inspect_Session_V1_ListArtifactsRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_ListArtifactsResponse {
    let caller = try await requireCaller()
    let after: Int64
    if request.pageToken.isEmpty {
      after = 0
    } else if let seq = Int64(request.pageToken), seq >= 0 {
      after = seq
    } else {
      throw RPCError(
        code: .invalidArgument, message: "page_token '\(request.pageToken)' is not one this service issued")
    }
    let size = request.pageSize == 0 ? 100 : Int(min(request.pageSize, 1000))
    return try await withAccess(request.sessionID, caller: caller, needs: .viewer) { session in
      let rows = try await session.database.artifacts(turnID: request.turnID, afterSeq: after, limit: size + 1)
      return .with {
        $0.artifacts = rows.prefix(size).map { artifact, _ in
          var artifact = artifact
          artifact.sessionID = session.id
          return artifact
        }
        if rows.count > size, let last = rows.prefix(size).last { $0.nextPageToken = String(last.1) }
      }
    }
  }

  func getArtifact(
    request: Inspect_Session_V1_GetArtifactRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_GetArtifactResponse {
    let dataDirectory = registry.paths.root.deletingLastPathComponent()
    let serve: @Sendable (SessionActor) async throws -> Inspect_Session_V1_GetArtifactResponse = { session in
      guard var artifact = try await session.database.artifact(id: request.artifactID) else {
        throw RPCError(code: .notFound, message: "session \(session.id) has no artifact '\(request.artifactID)'")
      }
      artifact.sessionID = session.id
      // Only files under this session's artifact directory are served, whatever a row says.
      let prefix = "artifacts/\(session.id)/"
      guard artifact.storagePath.hasPrefix(prefix), !artifact.storagePath.contains(".."),
        let content = FileManager.default.contents(
          atPath: dataDirectory.appendingPathComponent(artifact.storagePath).path)
      else {
        throw RPCError(
          code: .notFound,
          message: "the content of artifact \(artifact.id) is gone (expected at \(artifact.storagePath) under the data "
            + "directory, which SandboxService and SessionService must share)")
      }
      return .with {
        $0.artifact = artifact
        $0.content = content
      }
    }
    if !request.linkSignature.isEmpty {
      // A signed link: the signature, not a caller, grants this one artifact.
      guard let links = registry.artifactLinks,
        links.verify(
          session: request.sessionID, artifact: request.artifactID, expires: request.linkExpires,
          signature: request.linkSignature)
      else {
        throw RPCError(code: .permissionDenied, message: "the artifact link is not valid or has expired")
      }
      let result = try await registry.withSession(id: request.sessionID, serve)
      guard let result else { throw Self.notFound(request.sessionID) }
      return result
    }
    let caller = try await requireCaller()
    return try await withAccess(request.sessionID, caller: caller, needs: .viewer, serve)
  }

  // MARK: - Helpers

  private func requireCaller() async throws -> UserRecord {
    try await index.requireCaller()
  }

  /// Runs `body` with the session if the caller's role allows `required`. A session the caller
  /// does not take part in is NOT_FOUND, like one that does not exist.
  private func withAccess<T: Sendable>(
    _ sessionID: String, caller: UserRecord, needs required: Role, _ body: (SessionActor) async throws -> T
  ) async throws -> T {
    let result: T? = try await registry.withSession(id: sessionID) { session in
      guard let role = await session.role(of: caller) else { throw Self.notFound(sessionID) }
      guard role.allows(required) else {
        throw RPCError(
          code: .permissionDenied,
          message:
            "\(caller.displayName) is a \(role.rawValue) of session \(sessionID); this needs a \(required.rawValue) or more"
        )
      }
      return try await body(session)
    }
    guard let result else { throw Self.notFound(sessionID) }
    return result
  }

  private static func notFound(_ sessionID: String) -> RPCError {
    RPCError(code: .notFound, message: "no session with id '\(sessionID)'")
  }

  private func checkPromptText(_ text: String, required: Bool) throws {
    if required, text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
      throw RPCError(code: .invalidArgument, message: "the prompt text is empty")
    }
    let bytes = text.utf8.count
    guard bytes <= settings.maxPromptBytes else {
      throw RPCError(
        code: .invalidArgument,
        message: "the prompt is \(bytes) bytes; the limit is \(settings.maxPromptBytes) (attach long content instead)")
    }
  }

  private func proto(of session: SessionActor) async throws -> Inspect_Session_V1_Session {
    let record = await session.record
    let participants = await session.participantList
    let users = try await index.users(
      ids: participants.flatMap { [$0.userId] + ($0.addedBy.map { [$0] } ?? []) } + [record.createdBy])
    var proto = record.proto(creator: users[record.createdBy])
    proto.participants = participants.map {
      $0.proto(user: users[$0.userId], addedBy: $0.addedBy.flatMap { users[$0] })
    }
    proto.childSessionIds = try await index.childIDs(of: record.id)
    if let pull = try await session.database.latestPullRequest() {
      proto.pullRequest = .with {
        $0.number = pull.number
        $0.url = pull.url
        $0.state = pull.state
        $0.error = pull.error
      }
    }
    return proto
  }

  /// Rules must name a tool glob and a decision, and their globs must compile.
  static func checkPermissionRules(_ rules: [Inspect_Session_V1_PermissionRule]) throws {
    for (index, rule) in rules.enumerated() {
      guard !rule.tool.isEmpty else {
        throw RPCError(
          code: .invalidArgument, message: "permission_rules[\(index)] has no tool (a glob over tool names)")
      }
      guard [.allow, .ask, .deny].contains(rule.decision) else {
        throw RPCError(
          code: .invalidArgument, message: "permission_rules[\(index)] has no decision (allow, ask or deny)")
      }
      for pattern in [rule.tool, rule.path, rule.command] where !pattern.isEmpty {
        do {
          _ = try GlobPattern(pattern)
        } catch {
          throw RPCError(code: .invalidArgument, message: "permission_rules[\(index)]: \(error)")
        }
      }
    }
  }

  static func isRepositoryName(_ text: String) -> Bool {
    (try? RepositoryName(text)) != nil
  }
}

extension SessionRecord.State {
  init?(proto: Inspect_Session_V1_SessionState) {
    switch proto {
    case .idle: self = .idle
    case .queued: self = .queued
    case .running: self = .running
    case .stopping: self = .stopping
    case .archived: self = .archived
    default: return nil
    }
  }
}

extension PromptRecord {
  func proto(sessionID: String, position: Int) -> Inspect_Session_V1_Prompt {
    .with {
      $0.id = id
      $0.sessionID = sessionID
      $0.author = .with {
        $0.userID = authorId
        $0.displayName = authorName
      }
      $0.text = text
      $0.state =
        switch state {
        case .queued: .queued
        case .running: .running
        case .done: .done
        case .cancelled: .cancelled
        }
      $0.queuePosition = UInt32(position)
      $0.createdAt = .init(date: createdAt)
      $0.updatedAt = .init(date: updatedAt)
      $0.turnID = turnId ?? ""
      $0.client = client
      $0.attachments = PromptAttachments.references(storedAttachments)
    }
  }
}
