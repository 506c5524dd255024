import Foundation
import GRDB
import InspectProtos
import SwiftProtobuf

extension IndexDatabase {
  /// The stats page's counters: over every session or one repository's, activity since `since`,
  /// "now" meaning within `window` of `now`. Prompts from agents (client `agent`) are not counted
  /// as people prompting.
  func stats(
    repository: String?, since: Date, window: TimeInterval, now: Date = Date()
  ) async throws
    -> Inspect_Session_V1_SessionStats
  {
    try await writer.read { db in
      let windowStart = now.addingTimeInterval(-window)
      // `s` is the session table; every query below joins or filters through it.
      let scope = repository == nil ? "1" : "s.repository = ?"
      let scopeArguments: StatementArguments = repository.map { [$0] } ?? []
      func count(_ sql: String, _ arguments: StatementArguments = []) throws -> UInt64 {
        UInt64(try Int64.fetchOne(db, sql: sql, arguments: scopeArguments + arguments) ?? 0)
      }
      var stats = Inspect_Session_V1_SessionStats()
      stats.since = Google_Protobuf_Timestamp(date: since)
      stats.computedAt = Google_Protobuf_Timestamp(date: now)
      for row in try Row.fetchAll(
        db, sql: "SELECT s.state, COUNT(*) AS n FROM session s WHERE \(scope) GROUP BY s.state",
        arguments: scopeArguments)
      {
        let state: String = row["state"]
        let number = UInt64(row["n"] as Int64)
        stats.sessionsByState[state] = number
        stats.sessionsTotal += number
        if state == "running" || state == "stopping" { stats.sessionsRunning += number }
      }
      stats.sessionsCreated = try count("SELECT COUNT(*) FROM session s WHERE \(scope) AND s.createdAt >= ?", [since])
      let activity = "FROM activity a JOIN session s ON s.id = a.sessionId WHERE \(scope)"
      stats.promptsTotal = try count("SELECT COUNT(*) \(activity) AND a.kind = 'prompt'")
      stats.promptsInWindow = try count(
        "SELECT COUNT(*) \(activity) AND a.kind = 'prompt' AND a.client != 'agent' AND a.at >= ?", [windowStart])
      stats.humansPromptingNow = try count(
        "SELECT COUNT(DISTINCT a.userId) \(activity) AND a.kind = 'prompt' AND a.client != 'agent' AND a.at >= ?",
        [windowStart])
      for row in try Row.fetchAll(
        db,
        sql: """
          SELECT a.outcome, COUNT(*) AS n, SUM(a.inputTokens) AS input, SUM(a.outputTokens) AS output,
            SUM(a.costUsd) AS cost \(activity) AND a.kind = 'turn' AND a.at >= ? GROUP BY a.outcome
          """, arguments: scopeArguments + [since])
      {
        let number = UInt64(row["n"] as Int64)
        switch row["outcome"] as String? {
        case "succeeded": stats.turnsSucceeded = number
        case "failed": stats.turnsFailed = number
        case "cancelled": stats.turnsCancelled = number
        default: break
        }
        stats.inputTokens += UInt64(row["input"] as Int64? ?? 0)
        stats.outputTokens += UInt64(row["output"] as Int64? ?? 0)
        stats.costUsd += row["cost"] as Double? ?? 0
      }
      let pullRequests = "FROM pullRequest p JOIN session s ON s.id = p.sessionId WHERE \(scope)"
      stats.pullRequestsOpened = try count("SELECT COUNT(*) \(pullRequests) AND p.openedAt >= ?", [since])
      stats.pullRequestsMerged = try count("SELECT COUNT(*) \(pullRequests) AND p.mergedAt >= ?", [since])
      stats.pullRequestsClosed = try count("SELECT COUNT(*) \(pullRequests) AND p.closedAt >= ?", [since])
      stats.usersTotal = UInt64(try UserRecord.fetchCount(db))

      // Per client: sessions by the client they were created from, prompts by the client they
      // were sent from, pull requests by their session's client.
      var clients: [String: Inspect_Session_V1_ClientStats] = [:]
      func update(
        _ sql: String, _ arguments: StatementArguments, _ apply: (inout Inspect_Session_V1_ClientStats, Row) -> Void
      ) throws {
        for row in try Row.fetchAll(db, sql: sql, arguments: arguments) {
          let client: String = row["client"]
          apply(&clients[client, default: .with { $0.client = client }], row)
        }
      }
      try update(
        "SELECT s.client, COUNT(*) AS n FROM session s WHERE \(scope) AND s.createdAt >= ? GROUP BY s.client",
        scopeArguments + [since]
      ) { $0.sessionsCreated = UInt64($1["n"] as Int64) }
      try update(
        """
        SELECT a.client, SUM(a.at >= ?) AS since_count, SUM(a.at >= ? AND a.client != 'agent') AS window_count,
          COUNT(DISTINCT CASE WHEN a.at >= ? AND a.client != 'agent' THEN a.userId END) AS people
        \(activity) AND a.kind = 'prompt' GROUP BY a.client
        """, [since, windowStart, windowStart] + scopeArguments
      ) {
        $0.prompts = UInt64($1["since_count"] as Int64? ?? 0)
        $0.promptsInWindow = UInt64($1["window_count"] as Int64? ?? 0)
        $0.humansPromptingNow = UInt64($1["people"] as Int64? ?? 0)
      }
      try update(
        """
        SELECT s.client, SUM(p.openedAt >= ?) AS opened, SUM(p.mergedAt >= ?) AS merged
        \(pullRequests) GROUP BY s.client
        """, [since, since] + scopeArguments
      ) {
        $0.pullRequestsOpened = UInt64($1["opened"] as Int64? ?? 0)
        $0.pullRequestsMerged = UInt64($1["merged"] as Int64? ?? 0)
      }
      stats.byClient = clients.values.sorted {
        ($0.prompts + $0.sessionsCreated, $1.client) > ($1.prompts + $1.sessionsCreated, $0.client)
      }
      return stats
    }
  }
}
