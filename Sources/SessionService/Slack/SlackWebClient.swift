import AsyncHTTPClient
import Foundation
import InspectKit
import NIOCore
import NIOFoundationCompat

/// What went wrong calling Slack's Web API.
enum SlackError: Error, CustomStringConvertible, Equatable {
  /// 429: try again after this many seconds.
  case rateLimited(retryAfter: Int, method: String)
  /// `{"ok": false, "error": …}`.
  case api(error: String, method: String)
  /// Slack could not be reached, or answered something that is not the Web API's JSON.
  case unavailable(String)
  /// No bot token is configured.
  case notConfigured

  var description: String {
    switch self {
    case .rateLimited(let seconds, let method): "Slack rate-limited \(method) (retry after \(seconds) s)"
    case .api(let error, let method): "Slack refused \(method): \(error)"
    case .unavailable(let message): message
    case .notConfigured: "Slack is not configured: set INSPECT_SLACK_BOT_TOKEN"
    }
  }
}

/// Slack's Web API with the bot token: `POST <base>/<method>`; Slack answers HTTP 200 with
/// `{"ok": true, …}` or `{"ok": false, "error": …}`, and 429 with `Retry-After`. Write methods
/// (`chat.*`) take a JSON body; read methods (`users.info`, `conversations.*`) read only form
/// fields, so their arguments are sent form-encoded.
struct SlackWebClient: Sendable {
  let apiBaseURL: String
  let token: String?
  let http: HTTPClient

  init(settings: SlackSettings, http: HTTPClient = .shared) {
    apiBaseURL = settings.apiBaseURL
    token = settings.botToken
    self.http = http
  }

  /// Whether `method` takes a JSON body.
  static func takesJSON(_ method: String) -> Bool { method.hasPrefix("chat.") }

  /// `arguments` as `application/x-www-form-urlencoded` (strings and numbers; anything else as
  /// its JSON).
  static func form(_ arguments: [String: JSONValue]) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    func encode(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: allowed) ?? "" }
    return arguments.sorted { $0.key < $1.key }.map { key, value in
      let text: String
      switch value {
      case .string(let string): text = string
      case .integer(let number): text = String(number)
      case .bool(let flag): text = flag ? "true" : "false"
      default: text = String(decoding: (try? JSONEncoder().encode(value)) ?? Data(), as: UTF8.self)
      }
      return "\(encode(key))=\(encode(text))"
    }.joined(separator: "&")
  }

  /// Calls `method` with `arguments`; the answer's JSON object when `ok` is true.
  func call(_ method: String, _ arguments: [String: JSONValue]) async throws -> JSONValue {
    guard let token, !token.isEmpty else { throw SlackError.notConfigured }
    var request = HTTPClientRequest(url: "\(apiBaseURL)/\(method)")
    request.method = .POST
    request.headers.add(name: "Authorization", value: "Bearer \(token)")
    request.headers.add(name: "User-Agent", value: "inspect/\(InspectVersion.current)")
    if Self.takesJSON(method) {
      request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
      request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(arguments)))
    } else {
      request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
      request.body = .bytes(ByteBuffer(string: Self.form(arguments)))
    }
    let status: UInt
    let retryAfter: String?
    let data: Data
    do {
      let response = try await http.execute(request, timeout: .seconds(15))
      status = response.status.code
      retryAfter = response.headers.first(name: "Retry-After")
      data = Data(buffer: try await response.body.collect(upTo: 8 << 20))
    } catch {
      throw SlackError.unavailable("Slack (\(apiBaseURL)) could not be reached for \(method): \(error)")
    }
    if status == 429 {
      throw SlackError.rateLimited(retryAfter: max(1, Int(retryAfter ?? "") ?? 1), method: method)
    }
    guard status == 200, let object = try? JSONValue.decode(data), object.objectValue != nil else {
      throw SlackError.unavailable("Slack answered \(method) with HTTP \(status), not the Web API's JSON")
    }
    guard object["ok"]?.boolValue == true else {
      throw SlackError.api(error: object["error"]?.stringValue ?? "unknown_error", method: method)
    }
    return object
  }
}
