import Foundation
import HTTPTypes
import Hummingbird
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Synchronization
import Testing

@testable import ModelRouter
@testable import SandboxService

/// Log lines kept in memory, to check what a component logged.
final class LogCapture: Sendable {
  private let lines = Mutex<[String]>([])
  var all: [String] { lines.withLock { $0 } }

  func logger(_ label: String) -> Logger {
    var logger = Logger(label: label) { _ in Handler(capture: self) }
    logger.logLevel = .trace
    return logger
  }

  private struct Handler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
      get { metadata[key] }
      set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
      let merged = metadata.merging(event.metadata ?? [:]) { $1 }
      capture.lines.withLock { $0.append("\(event.level) \(event.message) \(merged)") }
    }
  }
}

/// Requests a stand-in received.
final class Seen: Sendable {
  private let lines = Mutex<[String]>([])
  func add(_ line: String) { lines.withLock { $0.append(line) } }
  var all: [String] { lines.withLock { $0 } }
}

/// Sentry, Datadog, LaunchDarkly, Buildkite and Braintrust on loopback, answering only requests
/// that carry the right credentials, and recording the paths asked.
private func integrationRouter(seen: Seen) -> Router<BasicRequestContext> {
  let router = Router()
  @Sendable func json(_ object: Any, _ request: Request, auth: (String, String)) -> Response {
    seen.add("\(request.method) \(request.uri)")
    guard request.headers[HTTPField.Name(auth.0)!] == auth.1 else {
      return Response(status: .unauthorized, body: .init(byteBuffer: ByteBuffer(string: #"{"detail":"bad token"}"#)))
    }
    let data = try! JSONSerialization.data(withJSONObject: object)
    return Response(
      status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }
  let sentry = ("Authorization", "Bearer \(IntegrationToolsTests.sentryToken)")
  router.get("/api/0/projects/acme/web/issues/") { request, _ in
    json(
      [["id": "101", "shortId": "WEB-1", "title": "ZeroDivisionError: division by zero", "count": "42"]], request,
      auth: sentry)
  }
  router.get("/api/0/organizations/acme/issues/101/events/latest/") { request, _ in
    json(
      [
        "eventID": "e1", "title": "ZeroDivisionError",
        "entries": [
          [
            "type": "exception",
            "data": [
              "values": [
                [
                  "type": "ZeroDivisionError",
                  // A careless service echoing the credential: it must not reach the model.
                  "value": "division by zero (request signed with \(IntegrationToolsTests.sentryToken))",
                  "stacktrace": ["frames": [["function": "average", "filename": "calc.py", "lineNo": 9]]],
                ]
              ]
            ],
          ]
        ],
      ], request, auth: sentry)
  }
  router.post("/api/v2/logs/events/search") { request, _ in
    guard request.headers[HTTPField.Name("DD-APPLICATION-KEY")!] == "dd-app-key-5678" else {
      return Response(status: .forbidden)
    }
    return json(
      [
        "data": [["attributes": ["timestamp": "t1", "status": "error", "service": "web", "message": "average failed"]]]
      ],
      request, auth: ("DD-API-KEY", "dd-api-key-1234"))
  }
  router.get("/api/v2/flags/default/new-checkout") { request, _ in
    json(
      [
        "key": "new-checkout", "variations": [["value": true], ["value": false]],
        "environments": ["production": ["on": true, "rules": [[:] as [String: Any]]]],
      ], request, auth: ("Authorization", "api-ld-token-9999"))
  }
  router.get("/v2/organizations/acme/pipelines/web/builds") { request, _ in
    json(
      [
        [
          "number": 7, "state": "failed", "branch": "main", "commit": "abc",
          "jobs": [["id": "j1", "name": "tests", "state": "failed"]],
        ]
      ],
      request, auth: ("Authorization", "Bearer bkua_token_7777"))
  }
  router.get("/v1/experiment") { request, _ in
    json(
      ["objects": [["id": "x1", "name": "baseline", "created": "c"]]], request,
      auth: ("Authorization", "Bearer sk-bt-3333"))
  }
  return router
}

@Suite("Integrations as agent tools: host side only, credentials never leave")
struct IntegrationToolsTests {
  static let sentryToken = "sntrys_SECRET_abcdef123456"

  static func credentials(_ base: String) -> [Inspect_Sandbox_V1_IntegrationCredential] {
    let pairs: [(String, String, String)] = [
      ("sentry", "token", sentryToken), ("sentry", "org", "acme"), ("sentry", "base_url", base),
      ("datadog", "api_key", "dd-api-key-1234"), ("datadog", "application_key", "dd-app-key-5678"),
      ("datadog", "base_url", base), ("launchdarkly", "token", "api-ld-token-9999"), ("launchdarkly", "base_url", base),
      ("buildkite", "token", "bkua_token_7777"), ("buildkite", "org", "acme"), ("buildkite", "base_url", base),
      ("braintrust", "api_key", "sk-bt-3333"), ("braintrust", "base_url", base),
    ]
    return pairs.map { integration, name, value in
      .with {
        $0.integration = integration
        $0.name = name
        $0.value = value
      }
    }
  }

  static let secretValues = [
    sentryToken, "dd-api-key-1234", "dd-app-key-5678", "api-ld-token-9999", "bkua_token_7777", "sk-bt-3333",
  ]

  @Test(
    "each integration's tools call its service with its credentials; nothing secret reaches model, sandbox, events or logs"
  )
  func integrations() async throws {
    let seen = Seen()
    let fixture = try DirectoryFixture()
    defer { Task { await fixture.finish() } }
    let calls: [OpenAIStandIn.Reply] = [
      .toolCalls([.init(id: "c1", name: "sentry_issues", arguments: #"{"project":"web"}"#)]),
      .toolCalls([.init(id: "c2", name: "sentry_latest_event", arguments: #"{"issue_id":"101"}"#)]),
      .toolCalls([.init(id: "c3", name: "datadog_logs", arguments: #"{"query":"service:web status:error"}"#)]),
      .toolCalls([.init(id: "c4", name: "launchdarkly_flag", arguments: #"{"flag":"new-checkout"}"#)]),
      .toolCalls([
        .init(id: "c5", name: "buildkite_builds", arguments: #"{"pipeline":"web","branch":"main","state":"failed"}"#)
      ]),
      .toolCalls([.init(id: "c6", name: "braintrust_experiments", arguments: #"{"project_id":"p1"}"#)]),
      .toolCalls([.init(id: "c7", name: "run_command", arguments: #"{"command":"env; cat .git/config"}"#)]),
      .text("Done."),
    ]
    let logs = LogCapture()
    try await withHTTPStandIn(integrationRouter(seen: seen)) { base in
      try await withOpenAIStandIn(calls) { model in
        let (finished, events) = try await withModelRouter(
          openAI: try OpenAISettings(baseURL: model.baseURL, apiKey: "sk", defaultModel: "m")
        ) { client, _ in
          let loop = AgentLoop(
            model: client, modelAddress: HostAndPort(host: "127.0.0.1", port: 0), manager: fixture.manager,
            logger: logs.logger("test.agent"))
          var turn = fixture.turn(session: "ses-integrations")
          turn.model = "openai:m"
          turn.credentials = Self.credentials(base)
          let log = EventLog()
          let finished = await loop.run(turn) { log.append($0) }
          return (finished, log)
        }
        #expect(finished.outcome == .succeeded, "\(finished.reason)")
        let results = model.requests.dropFirst().compactMap { $0.messages.last?.content }
        #expect(results.count == 7)
        #expect(results[0].contains("WEB-1: ZeroDivisionError"))
        #expect(results[1].contains("at average (calc.py:9)"))
        #expect(results[1].contains("[redacted]"), "the echoed credential is redacted")
        #expect(results[2].contains("error web: average failed"))
        #expect(results[3].contains("new-checkout in production: ON"))
        #expect(results[4].contains("#7 failed main abc failed: tests (job j1)"))
        #expect(results[5].contains("x1 baseline"))
        // Nothing secret in what the model was sent, what the sandbox saw, the events or the logs.
        let modelText = model.requests.map { String(decoding: $0.body, as: UTF8.self) }.joined()
        let eventText = try events.all.map { try $0.jsonString() }.joined()
        let logText = logs.all.joined(separator: "\n")
        #expect(
          logText.contains("\"tool\": sentry_latest_event"), "the agent logged its tool calls: \(logText.prefix(300))")
        for secret in Self.secretValues {
          #expect(!modelText.contains(secret), "the model saw \(secret)")
          #expect(!eventText.contains(secret), "the event log holds \(secret)")
          #expect(!logText.contains(secret), "the logs hold \(secret)")
        }
        #expect(model.requests.first?.toolNames.contains("sentry_issues") == true)
      }
    }
    #expect(seen.all.contains { $0.contains("state=failed") })
  }

  @Test("an integration without credentials offers no tools; a refused credential is a clear error, not the token")
  func disabledAndRefused() async throws {
    #expect(IntegrationTools.tools(for: []).isEmpty)
    let names = IntegrationTools.tools(for: Self.credentials("http://127.0.0.1:1")).map(\.name)
    #expect(
      names == [
        "braintrust_experiments", "braintrust_logs", "buildkite_builds", "buildkite_job_log", "datadog_logs",
        "datadog_metrics", "launchdarkly_flag", "sentry_issues", "sentry_latest_event",
      ])
    let seen = Seen()
    try await withHTTPStandIn(integrationRouter(seen: seen)) { base in
      var credentials = Self.credentials(base)
      credentials = credentials.map { credential in
        var credential = credential
        if credential.integration == "sentry", credential.name == "token" { credential.value = "sntrys_WRONG_000000" }
        return credential
      }
      let tool = try #require(IntegrationTools.tools(for: credentials).first { $0.name == "sentry_issues" })
      let fixture = try DirectoryFixture()
      defer { Task { await fixture.finish() } }
      let entry = try await fixture.manager.claim(.init(repository: fixture.repository, sessionID: "ses-x"))
      let error = await #expect(throws: ToolFailure.self) {
        _ = try await tool.run(
          Data(#"{"project":"web"}"#.utf8),
          ToolContext(sandbox: entry.instance, turn: fixture.turn(session: "ses-x"), toolCallID: "tc", emit: { _ in }))
      }
      #expect(error?.description.contains("HTTP 401") == true)
      #expect(error?.description.contains("credential was refused") == true)
      #expect(error?.description.contains("sntrys_WRONG") == false)
    }
  }
}
