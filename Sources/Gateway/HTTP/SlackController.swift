import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HTTPTypes
import Hummingbird
import InspectKit
import InspectProtos
import NIOCore

/// `POST /slack/events` (the Events API) and `POST /slack/interactions` (buttons).
///
/// Every request's signature is checked before its body is parsed: `X-Slack-Signature` is
/// `v0=` + hex HMAC-SHA256(signing secret, `v0:<X-Slack-Request-Timestamp>:<raw body>`), compared
/// in constant time, and the timestamp must be within 5 minutes of now (a replayed request is
/// refused). `url_verification` is answered here with its challenge; everything else is handed
/// to SessionService, which stores it under its id (an event's `event_id`, the same on Slack's
/// retries, so a retry never acts twice) and answers at once: Slack gets its 2xx well within its
/// 3 s, and the work happens afterwards.
struct SlackController: Sendable {
  /// Slack's requests are small; anything much larger is not from Slack.
  static let maxBody = 1 << 20
  /// How far a request's timestamp may be from now, either way.
  static let window: TimeInterval = 300

  let secret: SymmetricKey?
  let slack: Inspect_Session_V1_SlackService.Client<HTTP2ClientTransport.Posix>
  let downstream: Downstream
  var now: @Sendable () -> Date = { Date() }

  /// The signing secret from `INSPECT_SLACK_SIGNING_SECRET`, else the file named by
  /// `INSPECT_SLACK_SIGNING_SECRET_FILE`; nil when neither is set (Slack's requests are then
  /// refused as not configured).
  static func secret(environment: [String: String]) throws -> SymmetricKey? {
    try GitHubWebhookController.secret(
      environment: environment, variable: "INSPECT_SLACK_SIGNING_SECRET")
  }

  func register(on router: Router<GatewayRequestContext>) {
    router.post("slack/events") { request, _ in try await self.events(request) }
    router.post("slack/interactions") { request, _ in try await self.interactions(request) }
  }

  func events(_ request: Request) async throws -> Response {
    let body = try await verifiedBody(request)
    guard let envelope = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
      throw APIError(.badRequest, "the body is not a JSON object")
    }
    let type = envelope["type"] as? String ?? ""
    switch type {
    case "url_verification":
      guard let challenge = envelope["challenge"] as? String else {
        throw APIError(.badRequest, "url_verification without a challenge")
      }
      let json = try JSONSerialization.data(withJSONObject: ["challenge": challenge])
      return Response(
        status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(data: json)))
    case "event_callback":
      guard let id = envelope["event_id"] as? String, !id.isEmpty else {
        throw APIError(.badRequest, "the event_callback has no event_id")
      }
      guard envelope["event"] is [String: Any] else { throw APIError(.badRequest, "the event_callback has no event") }
      return try await deliver(kind: "event", id: id, payload: body)
    default:
      // E.g. `app_rate_limited`: Slack counts answers other than 2xx against the app, so any
      // signed request of a type Inspect does not act on is taken and set aside.
      return GitHubWebhookController.answer(duplicate: false, accepted: false, status: .ok)
    }
  }

  func interactions(_ request: Request) async throws -> Response {
    let body = try await verifiedBody(request)
    guard let form = String(data: body, encoding: .utf8),
      let field = URLComponents(string: "?" + form.replacingOccurrences(of: "+", with: "%20"))?.queryItems?
        .first(where: { $0.name == "payload" })?.value
    else {
      throw APIError(.badRequest, "the body is not a form with a payload field")
    }
    let payload = Data(field.utf8)
    guard let object = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any] else {
      throw APIError(.badRequest, "the payload field is not a JSON object")
    }
    let id: String
    if let trigger = object["trigger_id"] as? String, !trigger.isEmpty {
      id = "trigger:" + trigger
    } else {
      id = "sha256:" + SHA256.hash(data: payload).map { String(format: "%02x", $0) }.joined()
    }
    return try await deliver(kind: "interaction", id: id, payload: payload)
  }

  private func deliver(kind: String, id: String, payload: Data) async throws -> Response {
    let answer: Inspect_Session_V1_DeliverSlackResponse
    do {
      answer = try await slack.deliverSlack(
        .with {
          $0.kind = kind
          $0.id = id
          $0.payload = payload
        }, options: Downstream.callOptions)
    } catch {
      throw APIError(downstream.map(error))
    }
    // 200 either way: Slack treats any 2xx as delivered, and a duplicate needs no retry.
    return GitHubWebhookController.answer(duplicate: answer.duplicate, accepted: answer.accepted, status: .ok)
  }

  /// The raw body, once its signature and timestamp are checked.
  private func verifiedBody(_ request: Request) async throws -> Data {
    guard let secret else {
      throw APIError(
        .preconditionFailed, code: "FAILED_PRECONDITION",
        "Slack is not configured on this Gateway: set INSPECT_SLACK_SIGNING_SECRET (or _FILE)")
    }
    guard let timestamp = request.headers[HTTPField.Name("X-Slack-Request-Timestamp")!] else {
      throw APIError(.unauthorized, "the X-Slack-Request-Timestamp header is missing")
    }
    guard let signature = request.headers[HTTPField.Name("X-Slack-Signature")!] else {
      throw APIError(.unauthorized, "the X-Slack-Signature header is missing")
    }
    let buffer: ByteBuffer
    do {
      buffer = try await request.body.collect(upTo: Self.maxBody)
    } catch {
      throw APIError(.contentTooLarge, "the request is larger than \(Self.maxBody) bytes")
    }
    let body = Data(buffer: buffer)
    switch Self.verify(signature: signature, timestamp: timestamp, body: body, secret: secret, now: now()) {
    case .valid: return body
    case .stale:
      throw APIError(
        .unauthorized, "X-Slack-Request-Timestamp is not within \(Int(Self.window)) s of now (a replayed request?)")
    case .mismatch:
      throw APIError(.unauthorized, "the X-Slack-Signature signature does not match the body and the signing secret")
    }
  }

  enum Verdict: Equatable { case valid, stale, mismatch }

  /// Checks Slack's v0 signature: the timestamp (whole seconds) within ``window`` of `now`, and
  /// `signature` = `v0=` + hex HMAC-SHA256(secret, `v0:<timestamp>:<body>`), compared in
  /// constant time.
  static func verify(signature: String, timestamp: String, body: Data, secret: SymmetricKey, now: Date) -> Verdict {
    guard let seconds = Int64(timestamp), abs(now.timeIntervalSince1970 - Double(seconds)) <= window else {
      return .stale
    }
    guard signature.hasPrefix("v0="), let mac = Data(hex: String(signature.dropFirst(3))), mac.count == SHA256.byteCount
    else { return .mismatch }
    var signed = Data("v0:\(timestamp):".utf8)
    signed.append(body)
    return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: signed, using: secret) ? .valid : .mismatch
  }
}
