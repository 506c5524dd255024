import Foundation
import GRDB
import InspectProtos
import Logging

/// Every model call this ModelRouter made, one row per `Generate` or `Transcribe` call, in
/// `<data-dir>/model/usage.sqlite` (WAL, `synchronous=NORMAL`: accounting, not acknowledged
/// state — a crash may lose the last calls' rows, never corrupt the file). `GetUsage` sums a
/// session's rows; the agent loop and SessionService keep their own per-turn totals from the
/// usage messages of the stream.
struct UsageLedger: Sendable {
  /// One call as recorded.
  struct Call: Sendable {
    enum Outcome: String, Sendable {
      case succeeded, failed, cancelled
    }

    var sessionID = ""
    var turnID = ""
    var client = ""
    var task = ""
    /// The model that answered, else the last one tried.
    var model: String
    var outcome: Outcome
    /// `inspect-model-error` of a failed call.
    var errorType = ""
    var usage = Inspect_Model_V1_Usage()
    var audioSeconds = 0.0
    var duration: Duration
  }

  let writer: any DatabaseWriter

  /// Opens (creating if needed) the ledger in `directory`.
  static func open(in directory: URL) throws -> UsageLedger {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let pool = try DatabasePool(path: directory.appendingPathComponent("usage.sqlite").path)
    return try UsageLedger(writer: pool)
  }

  init(writer: any DatabaseWriter) throws {
    self.writer = writer
    var migrator = DatabaseMigrator()
    migrator.registerMigration("v1: calls") { db in
      try db.create(table: "call") { table in
        table.autoIncrementedPrimaryKey("id")
        table.column("at", .datetime).notNull()
        table.column("sessionId", .text).notNull()
        table.column("turnId", .text).notNull()
        table.column("client", .text).notNull()
        table.column("task", .text).notNull()
        table.column("model", .text).notNull()
        table.column("outcome", .text).notNull()
        table.column("errorType", .text).notNull()
        table.column("inputTokens", .integer).notNull()
        table.column("outputTokens", .integer).notNull()
        table.column("cachedInputTokens", .integer).notNull()
        table.column("costUsd", .double).notNull()
        table.column("audioSeconds", .double).notNull()
        table.column("durationMs", .double).notNull()
      }
      try db.create(index: "call_session", on: "call", columns: ["sessionId"])
    }
    try migrator.migrate(writer)
  }

  /// Closes the file (tests reopen it as a restarted service would).
  func close() throws {
    try (writer as? DatabasePool)?.close()
  }

  func record(_ call: Call) async throws {
    try await writer.write { db in
      try db.execute(
        sql: """
          INSERT INTO call (at, sessionId, turnId, client, task, model, outcome, errorType, inputTokens,
            outputTokens, cachedInputTokens, costUsd, audioSeconds, durationMs)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          """,
        arguments: [
          Date(), call.sessionID, call.turnID, call.client, call.task, call.model, call.outcome.rawValue,
          call.errorType, Int64(call.usage.inputTokens), Int64(call.usage.outputTokens),
          Int64(call.usage.cachedInputTokens), call.usage.costUsd, call.audioSeconds,
          Double(call.duration.components.seconds) * 1000 + Double(call.duration.components.attoseconds) / 1e15,
        ])
    }
  }

  /// A session's totals and per-model sums, most expensive first.
  func usage(session: String) async throws -> Inspect_Model_V1_GetUsageResponse {
    let rows = try await writer.read { db in
      try Row.fetchAll(
        db,
        sql: """
          SELECT model, COUNT(*) AS calls, SUM(outcome = 'failed') AS failed, SUM(inputTokens) AS input,
            SUM(outputTokens) AS output, SUM(cachedInputTokens) AS cached, SUM(costUsd) AS cost,
            SUM(audioSeconds) AS audio
          FROM call WHERE sessionId = ? GROUP BY model ORDER BY cost DESC, calls DESC, model
          """,
        arguments: [session])
    }
    var response = Inspect_Model_V1_GetUsageResponse()
    response.sessionID = session
    for row in rows {
      let usage = Inspect_Model_V1_ModelUsage.with {
        $0.model = row["model"]
        $0.calls = UInt64(row["calls"] as Int64)
        $0.failedCalls = UInt64(row["failed"] as Int64? ?? 0)
        $0.inputTokens = UInt64(row["input"] as Int64? ?? 0)
        $0.outputTokens = UInt64(row["output"] as Int64? ?? 0)
        $0.cachedInputTokens = UInt64(row["cached"] as Int64? ?? 0)
        $0.costUsd = row["cost"] as Double? ?? 0
        $0.audioSeconds = row["audio"] as Double? ?? 0
      }
      response.byModel.append(usage)
      response.total.calls += usage.calls
      response.total.failedCalls += usage.failedCalls
      response.total.inputTokens += usage.inputTokens
      response.total.outputTokens += usage.outputTokens
      response.total.cachedInputTokens += usage.cachedInputTokens
      response.total.costUsd += usage.costUsd
      response.total.audioSeconds += usage.audioSeconds
    }
    return response
  }
}
