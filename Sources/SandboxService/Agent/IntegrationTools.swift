import AsyncHTTPClient
import Foundation
import InspectKit
import InspectProtos
import NIOCore
import NIOHTTP1

/// Read-only tools over the telemetry, flag and CI services a repository enables (Sentry,
/// Datadog, LaunchDarkly, Buildkite, Braintrust; calls in `../shared/docs/PROTOCOLS.md`).
///
/// An integration is enabled for a turn when `StartTurn.credentials` holds its credentials
/// (secrets named `<integration>.<field>`, see `SecretsStore`). The calls run here, on the host
/// side: credentials go into request headers and nowhere else — not into the sandbox, the
/// model's messages, events or logs — and any credential value an answer happens to contain is
/// replaced with `[redacted]` before the model or the event log sees it (``CredentialRedactor``). Every base URL is a credential field (`base_url`) with the
/// public service as default, so tests point them at loopback stand-ins.
enum IntegrationTools {
  /// The credentials of one integration, by field (`token`, `org`, `base_url`…).
  struct Credentials: Sendable {
    let integration: String
    let fields: [String: String]

    func require(_ field: String) throws -> String {
      guard let value = fields[field], !value.isEmpty else {
        throw ToolFailure(
          "\(integration) is enabled without its '\(field)' credential; an administrator sets the secret "
            + "'\(integration).\(field)' for this repository")
      }
      return value
    }

    func baseURL(default fallback: String) -> String {
      var url = fields["base_url"].flatMap { $0.isEmpty ? nil : $0 } ?? fallback
      while url.hasSuffix("/") { url.removeLast() }
      return url
    }
  }

  /// The tools of every integration `credentials` enables.
  static func tools(for credentials: [Inspect_Sandbox_V1_IntegrationCredential]) -> [Tool] {
    var byIntegration: [String: [String: String]] = [:]
    for credential in credentials {
      byIntegration[credential.integration, default: [:]][credential.name] = credential.value
    }
    var tools: [Tool] = []
    for (integration, fields) in byIntegration.sorted(by: { $0.key < $1.key }) {
      let credentials = Credentials(integration: integration, fields: fields)
      switch integration {
      case "sentry": tools += sentry(credentials)
      case "datadog": tools += datadog(credentials)
      case "launchdarkly": tools += launchDarkly(credentials)
      case "buildkite": tools += buildkite(credentials)
      case "braintrust": tools += braintrust(credentials)
      default: break
      }
    }
    return tools
  }

  // MARK: - Sentry

  static func sentry(_ credentials: Credentials) -> [Tool] {
    let base = credentials.baseURL(default: "https://sentry.io")
    return [
      Tool(
        name: "sentry_issues", description: "List a Sentry project's unresolved issues (or those a search matches).",
        schema: """
          {"type":"object","properties":{"project":{"type":"string","minLength":1},\
          "query":{"type":"string","description":"Sentry search; default is:unresolved"}},\
          "required":["project"],"additionalProperties":false}
          """,
        access: .read, timeout: .seconds(30), retries: 1
      ) { data, _ in
        let arguments = try BuiltinTools.decode([String: String].self, data, tool: "sentry_issues")
        let org = try credentials.require("org")
        let body = try await get(
          "\(base)/api/0/projects/\(segment(org))/\(segment(arguments["project"] ?? ""))/issues/",
          query: ["query": arguments["query"] ?? "is:unresolved"],
          headers: ["Authorization": "Bearer \(try credentials.require("token"))"], tool: "sentry_issues")
        let issues = (try? JSONSerialization.jsonObject(with: body)) as? [[String: Any]] ?? []
        let lines = issues.prefix(50).map { issue in
          "\(issue["id"] ?? "?") \(issue["shortId"] ?? ""): \(issue["title"] ?? "") — \(issue["count"] ?? "?") events, "
            + "last seen \(issue["lastSeen"] ?? "?") \(issue["permalink"] ?? "")"
        }
        return ToolOutput(
          content: lines.isEmpty ? "no issues" : lines.joined(separator: "\n"), summary: "\(issues.count) Sentry issues"
        )
      },
      Tool(
        name: "sentry_latest_event", description: "The latest event of a Sentry issue, with its stack trace.",
        schema: """
          {"type":"object","properties":{"issue_id":{"type":"string","minLength":1}},"required":["issue_id"],\
          "additionalProperties":false}
          """,
        access: .read, timeout: .seconds(30), retries: 1
      ) { data, _ in
        let arguments = try BuiltinTools.decode([String: String].self, data, tool: "sentry_latest_event")
        let org = try credentials.require("org")
        let body = try await get(
          "\(base)/api/0/organizations/\(segment(org))/issues/\(segment(arguments["issue_id"] ?? ""))/events/latest/",
          headers: ["Authorization": "Bearer \(try credentials.require("token"))"], tool: "sentry_latest_event")
        let event = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        var lines = ["\(event["title"] ?? "event") (\(event["eventID"] ?? event["id"] ?? "?"))"]
        for entry in event["entries"] as? [[String: Any]] ?? [] where entry["type"] as? String == "exception" {
          let values = (entry["data"] as? [String: Any])?["values"] as? [[String: Any]] ?? []
          for value in values {
            lines.append("\(value["type"] ?? "Error"): \(value["value"] ?? "")")
            let frames = (value["stacktrace"] as? [String: Any])?["frames"] as? [[String: Any]] ?? []
            for frame in frames.reversed().prefix(30) {
              lines.append(
                "  at \(frame["function"] ?? "?") (\(frame["filename"] ?? frame["module"] ?? "?"):\(frame["lineNo"] ?? "?"))"
              )
            }
          }
        }
        return ToolOutput(
          content: lines.joined(separator: "\n"), summary: "latest event of \(arguments["issue_id"] ?? "")")
      },
    ]
  }

  // MARK: - Datadog

  static func datadog(_ credentials: Credentials) -> [Tool] {
    let base = credentials.baseURL(default: "https://api.datadoghq.com")
    @Sendable func headers() throws -> [String: String] {
      [
        "DD-API-KEY": try credentials.require("api_key"),
        "DD-APPLICATION-KEY": try credentials.require("application_key"),
      ]
    }
    return [
      Tool(
        name: "datadog_logs", description: "Search Datadog logs (Datadog query syntax) in a time range.",
        schema: """
          {"type":"object","properties":{"query":{"type":"string","minLength":1},\
          "from":{"type":"string","description":"e.g. now-1h (default)"},"to":{"type":"string"},\
          "limit":{"type":"integer","minimum":1,"maximum":200}},"required":["query"],"additionalProperties":false}
          """,
        access: .read, timeout: .seconds(30), retries: 1
      ) { data, _ in
        let arguments = try JSONValue.parse(String(decoding: data, as: UTF8.self))
        guard case .object(let fields) = arguments, case .string(let query)? = fields["query"] else {
          throw ToolFailure("datadog_logs: query is required")
        }
        func text(_ key: String, _ fallback: String) -> String {
          if case .string(let value)? = fields[key] { return value }
          return fallback
        }
        var limit = 50
        if case .integer(let value)? = fields["limit"] { limit = Int(value) }
        let request: [String: Any] = [
          "filter": ["query": query, "from": text("from", "now-1h"), "to": text("to", "now")], "sort": "-timestamp",
          "page": ["limit": limit],
        ]
        let body = try await send(
          "\(base)/api/v2/logs/events/search", method: .POST,
          body: try JSONSerialization.data(withJSONObject: request), headers: try headers(), tool: "datadog_logs")
        let logs =
          ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any])?["data"] as? [[String: Any]] ?? []
        let lines = logs.map { log -> String in
          let attributes = log["attributes"] as? [String: Any] ?? [:]
          return "\(attributes["timestamp"] ?? "?") \(attributes["status"] ?? "") \(attributes["service"] ?? ""): "
            + "\(attributes["message"] ?? "")"
        }
        return ToolOutput(
          content: lines.isEmpty ? "no logs match" : lines.joined(separator: "\n"), summary: "\(logs.count) log lines")
      },
      Tool(
        name: "datadog_metrics",
        description: "Query a Datadog metric (e.g. avg:trace.http.request.duration{service:web}).",
        schema: """
          {"type":"object","properties":{"query":{"type":"string","minLength":1},\
          "from":{"type":"integer","description":"Unix seconds"},"to":{"type":"integer","description":"Unix seconds"}},\
          "required":["query","from","to"],"additionalProperties":false}
          """,
        access: .read, timeout: .seconds(30), retries: 1
      ) { data, _ in
        struct Arguments: Decodable {
          let query: String
          let from: Int
          let to: Int
        }
        let arguments = try BuiltinTools.decode(Arguments.self, data, tool: "datadog_metrics")
        let body = try await get(
          "\(base)/api/v1/query",
          query: ["from": "\(arguments.from)", "to": "\(arguments.to)", "query": arguments.query],
          headers: try headers(),
          tool: "datadog_metrics")
        return ToolOutput(content: compact(body), summary: "metric \(arguments.query)")
      },
    ]
  }

  // MARK: - LaunchDarkly

  static func launchDarkly(_ credentials: Credentials) -> [Tool] {
    let base = credentials.baseURL(default: "https://app.launchdarkly.com")
    return [
      Tool(
        name: "launchdarkly_flag", description: "A LaunchDarkly feature flag: variations, whether it is on, its rules.",
        schema: """
          {"type":"object","properties":{"flag":{"type":"string","minLength":1},"project":{"type":"string"},\
          "environment":{"type":"string","description":"default production"}},"required":["flag"],\
          "additionalProperties":false}
          """,
        access: .read, timeout: .seconds(30), retries: 1
      ) { data, _ in
        let arguments = try BuiltinTools.decode([String: String].self, data, tool: "launchdarkly_flag")
        let project = arguments["project"] ?? credentials.fields["project"] ?? "default"
        let environment = arguments["environment"] ?? "production"
        let body = try await get(
          "\(base)/api/v2/flags/\(segment(project))/\(segment(arguments["flag"] ?? ""))", query: ["env": environment],
          // LaunchDarkly takes the access token as is, without "Bearer".
          headers: ["Authorization": try credentials.require("token")], tool: "launchdarkly_flag")
        let flag = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        let state = (flag["environments"] as? [String: Any])?[environment] as? [String: Any] ?? [:]
        let variations = (flag["variations"] as? [[String: Any]] ?? []).enumerated().map { index, variation in
          "  \(index): \(variation["value"].map { "\($0)" } ?? "?")\((variation["name"] as? String).map { " (\($0))" } ?? "")"
        }
        let lines =
          [
            "\(flag["key"] ?? arguments["flag"] ?? "") in \(environment): \((state["on"] as? Bool) == true ? "ON" : "OFF")"
          ]
          + ["variations:"] + variations + ["rules: \((state["rules"] as? [Any])?.count ?? 0)"]
        return ToolOutput(content: lines.joined(separator: "\n"), summary: lines[0])
      }
    ]
  }

  // MARK: - Buildkite

  static func buildkite(_ credentials: Credentials) -> [Tool] {
    let base = credentials.baseURL(default: "https://api.buildkite.com")
    return [
      Tool(
        name: "buildkite_builds", description: "Recent Buildkite builds of a pipeline (filter by branch and state).",
        schema: """
          {"type":"object","properties":{"pipeline":{"type":"string","minLength":1},"branch":{"type":"string"},\
          "state":{"type":"string","enum":["running","scheduled","passed","failed","canceled"]}},\
          "required":["pipeline"],"additionalProperties":false}
          """,
        access: .read, timeout: .seconds(30), retries: 1
      ) { data, _ in
        let arguments = try BuiltinTools.decode([String: String].self, data, tool: "buildkite_builds")
        var query: [String: String] = [:]
        if let branch = arguments["branch"] { query["branch"] = branch }
        if let state = arguments["state"] { query["state"] = state }
        let body = try await get(
          "\(base)/v2/organizations/\(segment(try credentials.require("org")))/pipelines/"
            + "\(segment(arguments["pipeline"] ?? ""))/builds", query: query,
          headers: ["Authorization": "Bearer \(try credentials.require("token"))"], tool: "buildkite_builds")
        let builds = (try? JSONSerialization.jsonObject(with: body)) as? [[String: Any]] ?? []
        let lines = builds.prefix(30).map { build -> String in
          let jobs = (build["jobs"] as? [[String: Any]] ?? []).filter { $0["state"] as? String == "failed" }
            .map { "\($0["name"] ?? "?") (job \($0["id"] ?? "?"))" }
          return "#\(build["number"] ?? "?") \(build["state"] ?? "?") \(build["branch"] ?? "") \(build["commit"] ?? "")"
            + (jobs.isEmpty ? "" : " failed: " + jobs.joined(separator: ", "))
        }
        return ToolOutput(
          content: lines.isEmpty ? "no builds" : lines.joined(separator: "\n"), summary: "\(builds.count) builds")
      },
      Tool(
        name: "buildkite_job_log", description: "The log of one Buildkite job.",
        schema: """
          {"type":"object","properties":{"pipeline":{"type":"string","minLength":1},"build":{"type":"integer","minimum":1},\
          "job":{"type":"string","minLength":1}},"required":["pipeline","build","job"],"additionalProperties":false}
          """,
        access: .read, timeout: .seconds(30), retries: 1
      ) { data, _ in
        struct Arguments: Decodable {
          let pipeline: String
          let build: Int
          let job: String
        }
        let arguments = try BuiltinTools.decode(Arguments.self, data, tool: "buildkite_job_log")
        let body = try await get(
          "\(base)/v2/organizations/\(segment(try credentials.require("org")))/pipelines/\(segment(arguments.pipeline))"
            + "/builds/\(arguments.build)/jobs/\(segment(arguments.job))/log",
          headers: ["Authorization": "Bearer \(try credentials.require("token"))"], tool: "buildkite_job_log")
        let log = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
        return ToolOutput(
          content: (log?["content"] as? String) ?? String(decoding: body, as: UTF8.self),
          summary: "log of job \(arguments.job)")
      },
    ]
  }

  // MARK: - Braintrust

  static func braintrust(_ credentials: Credentials) -> [Tool] {
    let base = credentials.baseURL(default: "https://api.braintrust.dev")
    return [
      Tool(
        name: "braintrust_experiments", description: "The Braintrust experiments of a project.",
        schema: """
          {"type":"object","properties":{"project_id":{"type":"string","minLength":1}},"required":["project_id"],\
          "additionalProperties":false}
          """,
        access: .read, timeout: .seconds(30), retries: 1
      ) { data, _ in
        let arguments = try BuiltinTools.decode([String: String].self, data, tool: "braintrust_experiments")
        let body = try await get(
          "\(base)/v1/experiment", query: ["project_id": arguments["project_id"] ?? ""],
          headers: ["Authorization": "Bearer \(try credentials.require("api_key"))"], tool: "braintrust_experiments")
        let objects =
          ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any])?["objects"] as? [[String: Any]] ?? []
        let lines = objects.map { "\($0["id"] ?? "?") \($0["name"] ?? ""): created \($0["created"] ?? "?")" }
        return ToolOutput(
          content: lines.isEmpty ? "no experiments" : lines.joined(separator: "\n"),
          summary: "\(objects.count) experiments")
      },
      Tool(
        name: "braintrust_logs", description: "Recent Braintrust project logs (inputs, outputs, scores).",
        schema: """
          {"type":"object","properties":{"project_id":{"type":"string","minLength":1},\
          "limit":{"type":"integer","minimum":1,"maximum":100}},"required":["project_id"],"additionalProperties":false}
          """,
        access: .read, timeout: .seconds(30), retries: 1
      ) { data, _ in
        struct Arguments: Decodable {
          let projectID: String
          let limit: Int?
          enum CodingKeys: String, CodingKey {
            case projectID = "project_id"
            case limit
          }
        }
        let arguments = try BuiltinTools.decode(Arguments.self, data, tool: "braintrust_logs")
        let body = try await send(
          "\(base)/v1/project_logs/\(segment(arguments.projectID))/fetch", method: .POST,
          body: try JSONSerialization.data(withJSONObject: ["limit": arguments.limit ?? 20]),
          headers: ["Authorization": "Bearer \(try credentials.require("api_key"))"], tool: "braintrust_logs")
        return ToolOutput(content: compact(body), summary: "project logs of \(arguments.projectID)")
      },
    ]
  }

  // MARK: - HTTP

  /// A path segment, percent-encoded.
  static func segment(_ text: String) -> String {
    var allowed = CharacterSet.urlPathAllowed
    allowed.remove(charactersIn: "/?#")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
  }

  static func get(
    _ url: String, query: [String: String] = [:], headers: [String: String], tool: String
  ) async throws -> Data {
    var components = URLComponents(string: url)
    if !query.isEmpty {
      components?.queryItems = query.sorted(by: { $0.key < $1.key }).map { URLQueryItem(name: $0.key, value: $0.value) }
    }
    return try await send(components?.string ?? url, method: .GET, body: nil, headers: headers, tool: tool)
  }

  /// Sends a request; a failure says the tool, the status and the service's own message, never a
  /// credential (headers are not quoted).
  static func send(
    _ url: String, method: HTTPMethod, body: Data?, headers: [String: String], tool: String
  ) async throws -> Data {
    var request = HTTPClientRequest(url: url)
    request.method = method
    request.headers.add(name: "Accept", value: "application/json")
    if let body {
      request.headers.add(name: "Content-Type", value: "application/json")
      request.body = .bytes(ByteBuffer(bytes: body))
    }
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    let response: HTTPClientResponse
    let host = URLComponents(string: url)?.host ?? "the service"
    do {
      response = try await HTTPClient.shared.execute(request, timeout: .seconds(20))
    } catch {
      throw ToolFailure("\(tool): cannot reach \(host): \(error)", retryable: true)
    }
    let data = Data(
      (try? await response.body.collect(upTo: 8 << 20))?.readableBytesView ?? ByteBuffer().readableBytesView)
    guard (200..<300).contains(Int(response.status.code)) else {
      let said = String(decoding: data.prefix(500), as: UTF8.self)
      let status = Int(response.status.code)
      throw ToolFailure(
        "\(tool): \(host) answered HTTP \(status)"
          + (status == 401 || status == 403 ? " (the credential was refused; an administrator should check it)" : "")
          + (said.isEmpty ? "" : ": \(said)"), retryable: status == 429 || status >= 500)
    }
    return data
  }

  /// JSON as compact text (or the bytes as they are).
  static func compact(_ data: Data) -> String {
    guard let object = try? JSONSerialization.jsonObject(with: data),
      let text = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    else { return String(decoding: data, as: UTF8.self) }
    return String(decoding: text, as: UTF8.self)
  }
}

/// Replaces every credential value of the turn that appears in a tool's result or error with
/// `[redacted]`, before after-execute hooks, the model or the event log see it (a service that
/// echoes a header, an error that quotes a URL with a key in it).
struct CredentialRedactor: Sendable {
  let values: [String]

  init(_ credentials: [Inspect_Sandbox_V1_IntegrationCredential]) {
    // Base URLs and account names are not secret, and very short values would redact ordinary text.
    values = credentials.filter { !["base_url", "org", "project"].contains($0.name) && $0.value.count >= 6 }
      .map(\.value).sorted { $0.count > $1.count }
  }

  func scrub(_ text: String) -> String {
    var text = text
    for value in values where text.contains(value) { text = text.replacingOccurrences(of: value, with: "[redacted]") }
    return text
  }
}
