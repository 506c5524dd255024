import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HTTPTypes
import Hummingbird
import InspectKit
import InspectProtos
import NIOCore

/// `POST /github/webhooks`: GitHub's deliveries. The signature (`X-Hub-Signature-256`, an
/// HMAC-SHA256 of the raw body with the webhook secret) is checked in constant time before
/// anything is read from the body; SessionService then stores the delivery (a delivery id seen
/// before is answered as a duplicate and not acted on again) and the Gateway answers at once.
/// The work happens in SessionService after the answer, well within GitHub's 10 s.
struct GitHubWebhookController: Sendable {
  /// GitHub's deliveries are at most 25 MB (SessionService accepts them that large).
  static let maxBody = 25 << 20

  let secret: SymmetricKey?
  let webhooks: Inspect_Session_V1_GitHubWebhookService.Client<HTTP2ClientTransport.Posix>
  let downstream: Downstream

  /// The webhook secret from `INSPECT_GITHUB_WEBHOOK_SECRET`, else the file named by
  /// `INSPECT_GITHUB_WEBHOOK_SECRET_FILE`; nil when neither is set (webhooks are then refused as
  /// not configured).
  static func secret(environment: [String: String]) throws -> SymmetricKey? {
    try secret(environment: environment, variable: "INSPECT_GITHUB_WEBHOOK_SECRET")
  }

  /// A shared secret from `variable`, else from the file named by `<variable>_FILE`; nil when
  /// neither is set.
  static func secret(environment: [String: String], variable: String) throws -> SymmetricKey? {
    try environment.valueOrFile(variable).map { SymmetricKey(data: Data($0.utf8)) }
  }

  func register(on router: Router<GatewayRequestContext>) {
    router.post("github/webhooks") { request, context in try await self.handle(request, context: context) }
  }

  func handle(_ request: Request, context: GatewayRequestContext) async throws -> Response {
    guard let secret else {
      // Built, but not configured here: a precondition of this deployment, not a missing feature.
      throw APIError(
        .preconditionFailed, code: "FAILED_PRECONDITION",
        "GitHub webhooks are not configured on this Gateway: set INSPECT_GITHUB_WEBHOOK_SECRET (or _FILE)")
    }
    guard let event = request.headers[HTTPField.Name("X-GitHub-Event")!], !event.isEmpty else {
      throw APIError(.badRequest, "the X-GitHub-Event header is missing")
    }
    guard let delivery = request.headers[HTTPField.Name("X-GitHub-Delivery")!], !delivery.isEmpty else {
      throw APIError(.badRequest, "the X-GitHub-Delivery header is missing")
    }
    let body: ByteBuffer
    do {
      body = try await request.body.collect(upTo: Self.maxBody)
    } catch {
      throw APIError(.contentTooLarge, "the delivery is larger than \(Self.maxBody) bytes")
    }
    let payload = Data(buffer: body)
    guard let header = request.headers[HTTPField.Name("X-Hub-Signature-256")!] else {
      throw APIError(.unauthorized, "the X-Hub-Signature-256 header is missing")
    }
    guard Self.verify(signature: header, payload: payload, secret: secret) else {
      throw APIError(.unauthorized, "the X-Hub-Signature-256 signature does not match the body and the webhook secret")
    }
    let answer: Inspect_Session_V1_DeliverWebhookResponse
    do {
      answer = try await webhooks.deliverWebhook(
        .with {
          $0.deliveryID = delivery
          $0.event = event
          $0.payload = payload
        }, options: Downstream.callOptions)
    } catch {
      throw APIError(downstream.map(error))
    }
    return Self.answer(
      duplicate: answer.duplicate, accepted: answer.accepted, status: answer.duplicate ? .ok : .accepted)
  }

  /// `{"duplicate":…,"accepted":…}`: how a stored delivery (GitHub's, Slack's) was taken.
  static func answer(duplicate: Bool, accepted: Bool, status: HTTPResponse.Status) -> Response {
    let json = #"{"duplicate":\#(duplicate),"accepted":\#(accepted)}"#
    return Response(
      status: status, headers: [.contentType: "application/json; charset=utf-8"],
      body: .init(byteBuffer: ByteBuffer(string: json)))
  }

  /// True when `header` is `sha256=<hex>` of HMAC-SHA256(secret, payload), compared in constant
  /// time.
  static func verify(signature header: String, payload: Data, secret: SymmetricKey) -> Bool {
    guard header.hasPrefix("sha256="), let mac = Data(hex: String(header.dropFirst("sha256=".count))),
      mac.count == SHA256.byteCount
    else { return false }
    return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: payload, using: secret)
  }
}
