import Foundation
import GRDB
import InspectKit
import InspectProtos
import SwiftProtobuf

/// `sessions/<session-id>.sqlite`: one session's ordered event log and its prompts.
///
/// Every event is stored whole (the protobuf `SessionEvent`, its `seq` the primary key) in the
/// same transaction as the state it changes, before anyone is told of it; `seq` is assigned
/// inside that transaction, so it is gap-free and follows commit order.
struct SessionDatabase: Sendable {
  let writer: any DatabaseWriter

  static func open(at url: URL) throws -> SessionDatabase {
    try SessionDatabase(writer: try DatabasePool.durable(at: url))
  }

  static func inMemory() throws -> SessionDatabase {
    try SessionDatabase(writer: DatabaseQueue())
  }

  init(writer: any DatabaseWriter) throws {
    self.writer = writer
    try Self.migrator.migrate(writer)
  }

  static var migrator: DatabaseMigrator {
    var migrator = DatabaseMigrator()
    migrator.registerMigration("v1: events and prompts") { db in
      try db.create(table: "event") { table in
        table.primaryKey("seq", .integer)
        table.column("time", .datetime).notNull()
        table.column("turnId", .text).notNull().defaults(to: "")
        table.column("kind", .text).notNull()
        table.column("payload", .blob).notNull()
      }
      try db.create(table: "prompt") { table in
        table.primaryKey("id", .text)
        table.column("authorId", .text).notNull()
        table.column("authorName", .text).notNull()
        table.column("text", .text).notNull()
        table.column("state", .text).notNull()
        table.column("client", .text).notNull().defaults(to: "")
        table.column("turnId", .text)
        table.column("createdAt", .datetime).notNull()
        table.column("updatedAt", .datetime).notNull()
        table.column("idempotencyKey", .text).unique()
      }
    }
    migrator.registerMigration("v2: turns, tool calls, artifacts and summaries") { db in
      // Projections of the event log, written in the same transaction as the event.
      try db.create(table: "turn") { table in
        table.primaryKey("id", .text)
        table.column("startedSeq", .integer).notNull().references("event")
        table.column("startedAt", .datetime).notNull()
        table.column("model", .text).notNull().defaults(to: "")
        table.column("finishedAt", .datetime)
        table.column("outcome", .text).check { ["succeeded", "failed", "cancelled"].contains($0) }
        table.column("failedPhase", .text)
        table.column("reason", .text)
        table.column("steps", .integer).notNull().defaults(to: 0)
        table.column("inputTokens", .integer).notNull().defaults(to: 0)
        table.column("outputTokens", .integer).notNull().defaults(to: 0)
        table.column("costUsd", .double).notNull().defaults(to: 0)
      }
      try db.create(table: "toolCall") { table in
        table.primaryKey("id", .text)
        table.column("turnId", .text).notNull().references("turn")
        table.column("name", .text).notNull()
        table.column("state", .text).notNull()
          .check { ["queued", "running", "succeeded", "failed", "cancelled"].contains($0) }
        table.column("attempt", .integer).notNull().defaults(to: 1)
        table.column("argumentsJson", .text).notNull().defaults(to: "")
        table.column("result", .text)
        table.column("resultSummary", .text)
        table.column("error", .text)
        table.column("artifactId", .text)
        table.column("durationMs", .integer)
        table.column("lastSeq", .integer).notNull().references("event")
        table.column("updatedAt", .datetime).notNull()
      }
      try db.create(index: "toolCall_on_turnId_state", on: "toolCall", columns: ["turnId", "state"])
      try db.create(index: "prompt_on_state", on: "prompt", columns: ["state"])
      try db.create(table: "artifact") { table in
        table.primaryKey("id", .text)
        table.column("turnId", .text)
        table.column("toolCallId", .text)
        table.column("kind", .text).notNull()
        table.column("name", .text).notNull()
        table.column("mediaType", .text).notNull()
        table.column("sizeBytes", .integer).notNull()
        table.column("sha256", .text).notNull()
        table.column("storagePath", .text).notNull()
        table.column("createdAt", .datetime).notNull()
        table.column("seq", .integer).notNull().references("event")
      }
      try db.create(table: "summary") { table in
        table.primaryKey("id", .text)
        table.column("turnId", .text)
        table.column("text", .text).notNull()
        table.column("tokensBefore", .integer).notNull()
        table.column("tokensAfter", .integer).notNull()
        table.column("seq", .integer).notNull().references("event")
      }
    }
    migrator.registerMigration("v3: permission rules") { db in
      // The session's own permission rules (protobuf `PermissionRule`), newest = highest id.
      try db.create(table: "permissionRule") { table in
        table.autoIncrementedPrimaryKey("id")
        table.column("payload", .blob).notNull()
        table.column("createdAt", .datetime).notNull()
      }
    }
    migrator.registerMigration("v4: events by kind") { db in
      // The newest event of a kind (the session's pull request) without scanning the log.
      try db.create(index: "event_on_kind_seq", on: "event", columns: ["kind", "seq"])
    }
    migrator.registerMigration("v5: prompt attachments") { db in
      // The prompt's attachments (``PromptAttachments/Stored`` as JSON); their content is in artifacts.
      try db.alter(table: "prompt") { table in
        table.add(column: "attachments", .text).notNull().defaults(to: "[]")
      }
    }
    return migrator
  }

  // MARK: - Permission rules

  /// Adds rules to the session's policy (the last of `rules` becomes the newest).
  func addPermissionRules(_ rules: [Inspect_Session_V1_PermissionRule]) async throws {
    guard !rules.isEmpty else { return }
    let payloads = try rules.map { try $0.serializedBytes() as Data }
    try await writer.write { db in
      let now = Date()
      for payload in payloads {
        try db.execute(sql: "INSERT INTO permissionRule (payload, createdAt) VALUES (?, ?)", arguments: [payload, now])
      }
    }
  }

  /// The session's rules, newest first.
  func permissionRules() async throws -> [Inspect_Session_V1_PermissionRule] {
    try await writer.read { db in
      try Data.fetchAll(db, sql: "SELECT payload FROM permissionRule ORDER BY id DESC").map {
        try Inspect_Session_V1_PermissionRule(serializedBytes: $0)
      }
    }
  }

  // MARK: - Events

  /// Appends `events` (their `seq` is ignored and assigned here) after running `change` in the
  /// same transaction; returns them with their `seq` and `time`.
  func append(
    _ events: [Inspect_Session_V1_SessionEvent],
    change: (@Sendable (Database) throws -> Void)? = nil
  ) async throws -> [Inspect_Session_V1_SessionEvent] {
    try await transact { db in
      try change?(db)
      return (events, ())
    }.events
  }

  /// Runs `body` in one transaction and appends the events it returns (numbered, timed and
  /// projected into the turn, tool call, artifact and summary tables) in that same transaction.
  /// An error thrown by `body` rolls everything back.
  func transact<Value: Sendable>(
    _ body: @escaping @Sendable (Database) throws -> (events: [Inspect_Session_V1_SessionEvent], value: Value)
  ) async throws -> (events: [Inspect_Session_V1_SessionEvent], value: Value) {
    try await writer.write { db in
      let (events, value) = try body(db)
      guard !events.isEmpty else { return ([], value) }
      var seq = UInt64(try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM event") ?? 0)
      let now = Date()
      let statement = try db.cachedStatement(
        sql: "INSERT INTO event (seq, time, turnId, kind, payload) VALUES (?, ?, ?, ?, ?)")
      let stored = try events.map { event in
        var event = event
        seq += 1
        event.seq = seq
        if !event.hasTime { event.time = Google_Protobuf_Timestamp(date: now) }
        try statement.execute(
          arguments: [Int64(seq), now, event.turnID, event.kindName, try event.serializedBytes() as Data])
        try Self.project(event, at: now, into: db)
        return event
      }
      return (stored, value)
    }
  }

  /// Keeps the tables derived from the log in step with it.
  private static func project(_ event: Inspect_Session_V1_SessionEvent, at now: Date, into db: Database) throws {
    let seq = Int64(event.seq)
    switch event.kind {
    case .turnStarted(let started):
      try db.execute(
        sql: "INSERT OR IGNORE INTO turn (id, startedSeq, startedAt, model) VALUES (?, ?, ?, ?)",
        arguments: [started.turnID, seq, now, started.model])
    case .turnFinished(let finished):
      try db.execute(
        sql: """
          UPDATE turn SET finishedAt = ?, outcome = ?, failedPhase = ?, reason = ?, steps = ?, inputTokens = ?,
            outputTokens = ?, costUsd = ? WHERE id = ?
          """,
        arguments: [
          now, finished.outcome.recordName, finished.outcome == .failed ? "\(finished.failedPhase)" : nil,
          finished.reason, Int64(finished.steps), Int64(clamping: finished.inputTokens),
          Int64(clamping: finished.outputTokens), finished.costUsd, event.turnID,
        ])
    case .toolCall(let call):
      let state = call.state.recordName
      let duration =
        call.hasDuration ? Int64(call.duration.seconds * 1000 + Int64(call.duration.nanos / 1_000_000)) : nil
      try db.execute(
        sql: """
          INSERT INTO toolCall (id, turnId, name, state, attempt, argumentsJson, result, resultSummary, error,
            artifactId, durationMs, lastSeq, updatedAt)
          VALUES (?, ?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), ?, ?, ?)
          ON CONFLICT(id) DO UPDATE SET state = excluded.state, attempt = excluded.attempt,
            result = COALESCE(excluded.result, result), resultSummary = COALESCE(excluded.resultSummary, resultSummary),
            error = COALESCE(excluded.error, error), artifactId = COALESCE(excluded.artifactId, artifactId),
            durationMs = COALESCE(excluded.durationMs, durationMs), lastSeq = excluded.lastSeq,
            updatedAt = excluded.updatedAt
          """,
        arguments: [
          call.toolCallID, event.turnID, call.name, state, Int64(max(call.attempt, 1)), call.argumentsJson,
          call.result, call.resultSummary, call.error, call.artifactID, duration, seq, now,
        ])
    case .artifactAdded(let added):
      let artifact = added.artifact
      try db.execute(
        sql: """
          INSERT OR REPLACE INTO artifact (id, turnId, toolCallId, kind, name, mediaType, sizeBytes, sha256,
            storagePath, createdAt, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          """,
        arguments: [
          artifact.id, event.turnID, artifact.toolCallID, "\(artifact.kind)", artifact.name, artifact.mediaType,
          Int64(clamping: artifact.sizeBytes), artifact.sha256, artifact.storagePath, now, seq,
        ])
    case .compaction(let compaction):
      try db.execute(
        sql:
          "INSERT OR REPLACE INTO summary (id, turnId, text, tokensBefore, tokensAfter, seq) VALUES (?, ?, ?, ?, ?, ?)",
        arguments: [
          compaction.summaryID, event.turnID, compaction.summary, Int64(compaction.tokensBefore),
          Int64(compaction.tokensAfter), seq,
        ])
    default:
      break
    }
  }

  /// Up to `limit` events with `seq` in `after+1 ... through`, in order.
  func events(
    after: UInt64, through: UInt64 = .max, limit: Int = 1000
  ) async throws -> [Inspect_Session_V1_SessionEvent] {
    try await writer.read { db in
      try Data.fetchAll(
        db, sql: "SELECT payload FROM event WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
        arguments: [Int64(clamping: after), Int64(clamping: through), limit]
      ).map { try Inspect_Session_V1_SessionEvent(serializedBytes: $0) }
    }
  }

  /// The newest `pull_request` event's pull request; nil when none was recorded.
  func latestPullRequest() async throws -> Inspect_Session_V1_PullRequest? {
    try await writer.read { db in
      try Data.fetchOne(
        db.cachedStatement(sql: "SELECT payload FROM event WHERE kind = 'pull_request' ORDER BY seq DESC LIMIT 1")
      ).map { try Inspect_Session_V1_SessionEvent(serializedBytes: $0).pullRequest }
    }
  }

  func lastSeq() async throws -> UInt64 {
    try await writer.read { UInt64(try Int64.fetchOne($0, sql: "SELECT MAX(seq) FROM event") ?? 0) }
  }

  // MARK: - Prompts

  /// Prompts in `states`, in the order they were sent.
  /// Artifacts after `seq` (oldest first), of one turn when `turnID` is not empty.
  func artifacts(turnID: String, afterSeq: Int64, limit: Int) async throws -> [(Inspect_Session_V1_Artifact, Int64)] {
    try await writer.read { db in
      try Row.fetchAll(
        db,
        sql: """
          SELECT * FROM artifact WHERE seq > ? AND (? = '' OR turnId = ?) ORDER BY seq LIMIT ?
          """,
        arguments: [afterSeq, turnID, turnID, limit]
      ).map { (Self.artifact(from: $0), $0["seq"] as Int64) }
    }
  }

  /// The session's artifacts of one kind, oldest first.
  func artifacts(kind: Inspect_Session_V1_ArtifactKind) async throws -> [Inspect_Session_V1_Artifact] {
    try await writer.read { db in
      try Row.fetchAll(db, sql: "SELECT * FROM artifact WHERE kind = ? ORDER BY seq", arguments: ["\(kind)"])
        .map(Self.artifact(from:))
    }
  }

  /// One artifact by id.
  func artifact(id: String) async throws -> Inspect_Session_V1_Artifact? {
    try await writer.read { db in
      try Row.fetchOne(db, sql: "SELECT * FROM artifact WHERE id = ?", arguments: [id]).map(Self.artifact(from:))
    }
  }

  private static func artifact(from row: Row) -> Inspect_Session_V1_Artifact {
    .with {
      $0.id = row["id"]
      $0.turnID = row["turnId"]
      $0.toolCallID = row["toolCallId"] ?? ""
      let kind: String = row["kind"]
      $0.kind = Inspect_Session_V1_ArtifactKind.allCases.first { "\($0)" == kind } ?? .unspecified
      $0.name = row["name"]
      $0.mediaType = row["mediaType"]
      $0.sizeBytes = UInt64(row["sizeBytes"] as Int64)
      $0.sha256 = row["sha256"]
      $0.storagePath = row["storagePath"]
      if let created = row["createdAt"] as Date? { $0.createdAt = .init(date: created) }
    }
  }

  func prompts(in states: [PromptRecord.State]) async throws -> [PromptRecord] {
    if states == [.queued] {
      // Every GetSession reads the queue.
      return try await writer.read { db in
        try PromptRecord.fetchAll(db.cachedStatement(sql: "SELECT * FROM prompt WHERE state = 'queued' ORDER BY rowid"))
      }
    }
    return try await writer.read { try PromptRecord.all(in: states).fetchAll($0) }
  }

  /// The tool calls of `turnID` that have not finished (queued or running), oldest first.
  func unfinishedToolCalls(turnID: String) async throws -> [ToolCallRecord] {
    try await writer.read { db in
      try ToolCallRecord.filter(Column("turnId") == turnID && ["queued", "running"].contains(Column("state")))
        .order(Column("lastSeq")).fetchAll(db)
    }
  }

  func prompt(idempotencyKey: String) async throws -> PromptRecord? {
    try await writer.read { try PromptRecord.filter(Column("idempotencyKey") == idempotencyKey).fetchOne($0) }
  }

  func synchronousMode() async throws -> Int {
    try await writer.read { try Int.fetchOne($0, sql: "PRAGMA synchronous") ?? -1 }
  }
}

/// A prompt someone sent; it waits in the queue until a turn takes it.
struct PromptRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
  static let databaseTableName = "prompt"

  /// Prompts in `states`, in the order they were sent (insertion order).
  static func all(in states: [State]) -> QueryInterfaceRequest<PromptRecord> {
    filter(states.map(\.rawValue).contains(Column("state"))).order(Column.rowID)
  }

  /// The prompt's 1-based place among the queued prompts; 0 when it is not queued.
  func queuePosition(_ db: Database) throws -> Int {
    guard state == .queued else { return 0 }
    return try Int.fetchOne(
      db,
      sql: "SELECT COUNT(*) FROM prompt WHERE state = 'queued' AND rowid <= (SELECT rowid FROM prompt WHERE id = ?)",
      arguments: [id]) ?? 0
  }

  enum State: String, Codable, Sendable {
    case queued, running, done, cancelled
  }

  var id: String
  var authorId: String
  var authorName: String
  var text: String
  var state: State
  var client: String
  var turnId: String?
  var createdAt: Date
  var updatedAt: Date
  var idempotencyKey: String?
  /// ``PromptAttachments/Stored`` as JSON.
  var attachments = "[]"

  var storedAttachments: [PromptAttachments.Stored] { PromptAttachments.decode(attachments) }
}

/// A tool call as projected from its `tool_call` events: its latest state, attempt, arguments and
/// result.
struct ToolCallRecord: Codable, Sendable, FetchableRecord, TableRecord, Equatable {
  static let databaseTableName = "toolCall"
  var id: String
  var turnId: String
  var name: String
  var state: String
  var attempt: Int
  var argumentsJson: String
  var result: String?
  var resultSummary: String?
  var error: String?
  var artifactId: String?
  var durationMs: Int64?
  var lastSeq: Int64
  var updatedAt: Date
}

extension Inspect_Session_V1_ToolCallState {
  /// The name stored in `toolCall.state`.
  var recordName: String {
    switch self {
    case .queued: "queued"
    case .running: "running"
    case .succeeded: "succeeded"
    case .failed: "failed"
    case .cancelled: "cancelled"
    default: "queued"
    }
  }
}

extension Inspect_Session_V1_TurnOutcome {
  /// The name stored in `turn.outcome`.
  var recordName: String? {
    switch self {
    case .succeeded: "succeeded"
    case .failed: "failed"
    case .cancelled: "cancelled"
    default: nil
    }
  }
}
