import Foundation
import GRPCCore
import InspectKit
import InspectProtos

/// `inspect.session.v1.SessionService`: sessions, their prompt queues and their live event
/// streams. Every call acts for ``InspectCaller/userID``.
struct SessionRPCService: Inspect_Session_V1_SessionService.SimpleServiceProtocol {
  let registry: SessionRegistry
  var index: IndexDatabase { registry.index }

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
    if !request.externalKey.isEmpty, let existing = try await index.session(externalKey: request.externalKey),
      let session = try registry.session(id: existing.id)
    {
      return try await respond(
        session: session, created: false, prompt: request.prompt, caller: caller, client: request.client)
    }
    let id = Identifier.make(.session)
    let now = Date()
    let record = SessionRecord(
      id: id, title: request.title, repository: repository,
      baseBranch: request.baseBranch.isEmpty ? "main" : request.baseBranch, branch: "inspect/\(id)", state: .idle,
      model: request.model, client: request.client,
      externalKey: request.externalKey.isEmpty ? nil : request.externalKey,
      createdBy: caller.id, createdAt: now, updatedAt: now, lastSeq: 0, currentTurnId: nil, queuedPrompts: 0)
    let session = try await registry.create(record, creator: caller)
    return try await respond(
      session: session, created: true, prompt: request.prompt, caller: caller, client: request.client)
  }

  private func respond(
    session: SessionActor, created: Bool, prompt: String, caller: UserRecord, client: String
  ) async throws -> Inspect_Session_V1_CreateSessionResponse {
    var response = Inspect_Session_V1_CreateSessionResponse()
    response.created = created
    if !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
      let queued = try await session.sendPrompt(text: prompt, author: caller, client: client, idempotencyKey: nil)
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
    _ = try await requireCaller()
    let session = try requireSession(request.sessionID)
    let queued = try await session.queuedPrompts()
    let proto = try await proto(of: session)
    return .with {
      $0.session = proto
      $0.queuedPrompts = queued.enumerated().map { position, prompt in
        prompt.proto(sessionID: session.id, position: position + 1)
      }
    }
  }

  func listSessions(
    request: Inspect_Session_V1_ListSessionsRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_ListSessionsResponse {
    _ = try await requireCaller()
    if !request.pageToken.isEmpty, !Identifier.isValid(request.pageToken, kind: .session) {
      throw RPCError(
        code: .invalidArgument, message: "page_token '\(request.pageToken)' is not one this service issued")
    }
    let size = request.pageSize == 0 ? 50 : Int(min(request.pageSize, 500))
    let states = request.states.compactMap(SessionRecord.State.init(proto:))
    let records = try await index.sessions(
      before: request.pageToken.isEmpty ? nil : request.pageToken, limit: size + 1,
      repository: request.repository.isEmpty ? nil : request.repository, states: states,
      externalKey: request.externalKey.isEmpty ? nil : request.externalKey)
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
    let session = try requireSession(request.sessionID)
    guard !request.text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
      throw RPCError(code: .invalidArgument, message: "the prompt text is empty")
    }
    let queued = try await session.sendPrompt(
      text: request.text, author: caller, client: request.client, idempotencyKey: request.idempotencyKey)
    await registry.scheduleTurns(for: session)
    return .with {
      $0.promptID = queued.prompt.id
      $0.queuePosition = UInt32(queued.position)
      $0.seq = queued.seq
    }
  }

  // MARK: - The live stream

  func subscribe(
    request: Inspect_Session_V1_SubscribeRequest,
    response: RPCWriter<Inspect_Session_V1_SubscribeResponse>,
    context: ServerContext
  ) async throws {
    _ = try await requireCaller()
    let session = try requireSession(request.sessionID)
    let (subscription, replayThrough) = await session.subscribe(after: request.afterSeq)
    do {
      // Ends when the subscriber leaves, the service shuts down, or the subscriber is cut off.
      try await untilRPCCancelled {
        // Stored events first, in pages; everything newer is already queued in the subscription.
        var cursor = request.afterSeq
        while cursor < replayThrough {
          let page = try await session.database.events(after: cursor, through: replayThrough, limit: 500)
          guard let last = page.last else { break }
          try await response.write(.with { $0.events = page })
          cursor = last.seq
        }
        for await item in subscription.stream {
          switch item {
          case .events(let events):
            try await response.write(.with { $0.events = events })
            subscription.consumed(events.count)
          case .resync(let afterSeq):
            try await response.write(.with { $0.resync = .with { $0.afterSeq = afterSeq } })
          }
        }
      }
    } catch {
      await session.unsubscribe(subscription)
      throw error
    }
    await session.unsubscribe(subscription)
  }

  // MARK: - Not built yet

  func editQueuedPrompt(
    request: Inspect_Session_V1_EditQueuedPromptRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_EditQueuedPromptResponse { throw Self.missing("EditQueuedPrompt") }

  func cancelQueuedPrompt(
    request: Inspect_Session_V1_CancelQueuedPromptRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_CancelQueuedPromptResponse { throw Self.missing("CancelQueuedPrompt") }

  func stopSession(
    request: Inspect_Session_V1_StopSessionRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_StopSessionResponse { throw Self.missing("StopSession") }

  func addParticipant(
    request: Inspect_Session_V1_AddParticipantRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_AddParticipantResponse { throw Self.missing("AddParticipant") }

  func removeParticipant(
    request: Inspect_Session_V1_RemoveParticipantRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_RemoveParticipantResponse { throw Self.missing("RemoveParticipant") }

  func updatePresence(
    request: Inspect_Session_V1_UpdatePresenceRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_UpdatePresenceResponse { throw Self.missing("UpdatePresence") }

  func prewarm(
    request: Inspect_Session_V1_PrewarmRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_PrewarmResponse { throw Self.missing("Prewarm") }

  func decideToolCall(
    request: Inspect_Session_V1_DecideToolCallRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_DecideToolCallResponse { throw Self.missing("DecideToolCall") }

  func listArtifacts(
    request: Inspect_Session_V1_ListArtifactsRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_ListArtifactsResponse { throw Self.missing("ListArtifacts") }

  func getArtifact(
    request: Inspect_Session_V1_GetArtifactRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_GetArtifactResponse { throw Self.missing("GetArtifact") }

  func getStats(
    request: Inspect_Session_V1_GetStatsRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_GetStatsResponse { throw Self.missing("GetStats") }

  // MARK: - Helpers

  private func requireCaller() async throws -> UserRecord {
    try await index.requireCaller()
  }

  private func requireSession(_ id: String) throws -> SessionActor {
    guard let session = try registry.session(id: id) else {
      throw RPCError(code: .notFound, message: "no session with id '\(id)'")
    }
    return session
  }

  private func proto(of session: SessionActor) async throws -> Inspect_Session_V1_Session {
    let record = await session.record
    return record.proto(creator: try await index.user(id: record.createdBy))
  }

  static func isRepositoryName(_ text: String) -> Bool {
    (try? RepositoryName(text)) != nil
  }

  private static func missing(_ method: String) -> RPCError {
    RPCError(
      code: .unimplemented,
      message: "inspect.session.v1.SessionService/\(method) is not implemented yet in this version of Inspect")
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
    }
  }
}
