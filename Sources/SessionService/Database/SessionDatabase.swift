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
    return migrator
  }

  // MARK: - Events

  /// Appends `events` (their `seq` is ignored and assigned here) after running `change` in the
  /// same transaction; returns them with their `seq` and `time`.
  func append(
    _ events: [Inspect_Session_V1_SessionEvent],
    change: (@Sendable (Database) throws -> Void)? = nil
  ) async throws -> [Inspect_Session_V1_SessionEvent] {
    try await writer.write { db in
      try change?(db)
      var seq = UInt64(try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM event") ?? 0)
      let now = Date()
      return try events.map { event in
        var event = event
        seq += 1
        event.seq = seq
        if !event.hasTime { event.time = Google_Protobuf_Timestamp(date: now) }
        try db.execute(
          sql: "INSERT INTO event (seq, time, turnId, kind, payload) VALUES (?, ?, ?, ?, ?)",
          arguments: [Int64(seq), now, event.turnID, event.kindName, try event.serializedBytes() as Data])
        return event
      }
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

  func lastSeq() async throws -> UInt64 {
    try await writer.read { UInt64(try Int64.fetchOne($0, sql: "SELECT MAX(seq) FROM event") ?? 0) }
  }

  // MARK: - Prompts

  func prompts(in states: [PromptRecord.State]) async throws -> [PromptRecord] {
    try await writer.read { db in
      try PromptRecord.filter(states.map(\.rawValue).contains(Column("state"))).order(Column("createdAt"), Column("id"))
        .fetchAll(db)
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
}
