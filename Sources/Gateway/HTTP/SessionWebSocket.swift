import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import InspectKit
import InspectProtos
import NIOWebSocket
import ServiceLifecycle
import Synchronization

/// `GET /v1/sessions/{id}/ws`: a session's events over a WebSocket, for clients that prefer one
/// socket to Server-Sent Events.
///
/// The client speaks first, with a resume message (JSON text):
/// `{"type": "resume", "afterSeq": 12, "token": "…"}`. `afterSeq` (default 0) is the last seq the
/// client has; `token` is for browsers, which cannot set headers on a WebSocket (a client that sent
/// `Authorization: Bearer …` on the upgrade leaves it out). The token and the session are
/// checked then, not at the upgrade. The Gateway answers
/// `{"type": "subscribed", "sessionId", "afterSeq"}`, then `{"type": "events", "events": […]}`
/// messages with every later event exactly once, in order (the same JSON as SSE's `data`). A
/// later resume message moves the stream: the events after its `afterSeq` follow, and nothing
/// from before it. Problems are `{"type": "error", "error": {"code", "message"}}` (the gRPC code
/// name, as in HTTP error bodies); a bad message after the first is answered and the socket stays
/// open. Closes: 1008 for a missing or failed first message, a bad token, an unknown session or a
/// flood (more than ``maxPendingMessages`` waiting); 1009 for a message over 64 KiB; 1011 when the
/// upstream broke or the client stopped reading; 1012 when SessionService ended the stream (it is
/// restarting); 1000 when the Gateway shuts down. After 1000, 1011 or 1012 a client reconnects and
/// resumes after the last seq it has.
struct SessionWebSocket {
  let sessions: Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix>
  let authenticator: Authenticator
  let downstream: Downstream
  /// How long the client has to send its first resume message.
  var firstMessageTimeout: Duration = .seconds(10)

  /// The largest message a client may send.
  static let maxMessageBytes = 64 << 10

  /// The server channel: HTTP/1.1 that upgrades `GET /v1/sessions/{id}/ws` to a WebSocket.
  /// Every upgrade of that path is accepted; the token and the session are checked when the first
  /// message arrives, and a refusal is an error message and a close, which a browser can read
  /// (a refused upgrade would be a bare 400: hummingbird-websocket writes no body for it).
  func serverBuilder() -> HTTPServerBuilder {
    let router = Router(context: GatewayRequestContext.self)
    router.ws("v1/sessions/:id/ws") { inbound, outbound, context in
      try await serve(inbound: inbound, outbound: outbound, context: context)
    }
    return .http1WebSocketUpgrade(
      webSocketRouter: router,
      configuration: .init(
        ws: .init(maxFrameSize: Self.maxMessageBytes, autoPing: .enabled(timePeriod: .seconds(30)))))
  }

  /// The plain `GET` of the same path (no upgrade): 401, 404, or 426 saying to upgrade.
  func upgradeRequired(context: GatewayRequestContext) async throws -> Response {
    do {
      try await checkSession(try context.parameters.require("id"), user: try context.requireUser())
    } catch let error as RPCError {
      throw APIError(error)
    }
    throw APIError(
      .upgradeRequired, code: "FAILED_PRECONDITION",
      "this endpoint speaks WebSocket: send the request with 'Connection: Upgrade' and 'Upgrade: websocket'",
      headers: [.upgrade: "websocket"])
  }

  /// A missing session (or one the user is not a member of) fails with NOT_FOUND.
  private func checkSession(_ id: String, user: Inspect_Session_V1_User) async throws(RPCError) {
    do {
      _ = try await sessions.getSession(
        .with { $0.sessionID = id }, metadata: Self.metadata(user), options: Downstream.callOptions)
    } catch {
      throw downstream.map(error)
    }
  }

  private static func metadata(_ user: Inspect_Session_V1_User) -> Metadata {
    var metadata = Metadata()
    metadata.addString(user.id, forKey: InspectCaller.metadataKey)
    return metadata
  }

  // MARK: - The conversation

  /// Client messages read ahead of their handling; past this the client is flooding.
  static let maxPendingMessages = 32
  /// Resume messages allowed in a burst; after it, one per second.
  static let resumeBurst = 5.0
  /// A message the client does not take within this long means it stopped reading.
  static let writeTimeout: Duration = .seconds(30)
  /// How long a close may take to go out.
  static let closeTimeout: Duration = .seconds(5)
  /// The upstream stream ended: SessionService is restarting (1012, "service restart").
  static let serviceRestart = WebSocketErrorCode(codeNumber: 1012)

  /// What the connection reacts to, in order.
  private enum Command: Sendable {
    case message(ClientMessage)
    case invalid(String)
    /// The first message did not come in time.
    case firstMessageLate
    /// The subscription of `generation` ended (nil: cleanly).
    case ended(generation: Int, RPCError?)
    /// More than ``maxPendingMessages`` messages were waiting.
    case flooded
    /// Reading failed (a protocol error, a message over the limit); the error closes the socket.
    case readFailed(any Error)
  }

  /// How a conversation ends.
  private enum Outcome {
    /// Close with this code and reason.
    case close(WebSocketErrorCode, String)
    /// Rethrow a read error: the WebSocket handler closes with its code (1002, 1009…).
    case failed(any Error)
    /// The client left, or the Gateway is shutting down (the WebSocket handler closes).
    case gone
  }

  /// Client messages read but not handled yet.
  private final class PendingCount: Sendable {
    private let count = Mutex(0)
    /// Adds one; the new count.
    func increment() -> Int {
      count.withLock {
        $0 += 1; return $0
      }
    }
    func decrement() { count.withLock { $0 -= 1 } }
  }

  /// The client did not take a message in time.
  struct SlowClient: Error, CustomStringConvertible {
    var description: String { "the client did not read a message within \(SessionWebSocket.writeTimeout)" }
  }

  private func serve(
    inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter,
    context: WebSocketRouterContext<GatewayRequestContext>
  ) async throws {
    let id = try context.requestContext.parameters.require("id")
    let (commands, continuation) = AsyncStream.makeStream(of: Command.self)
    let (timeout, pending) = (firstMessageTimeout, PendingCount())
    let outcome = await withTaskGroup(of: Void.self) { group in
      group.addTask {
        defer { continuation.finish() }
        do {
          for try await message in inbound.messages(maxSize: Self.maxMessageBytes) {
            guard pending.increment() <= Self.maxPendingMessages else {
              continuation.yield(.flooded)
              return
            }
            do {
              continuation.yield(.message(try ClientMessage(message)))
            } catch {
              continuation.yield(.invalid("\(error)"))
            }
          }
        } catch {
          continuation.yield(.readFailed(error))
        }
      }
      group.addTask {
        try? await Task.sleep(for: timeout)
        continuation.yield(.firstMessageLate)
      }
      let outcome = await converse(
        id: id, authorization: context.request.headers[.authorization], commands: commands,
        continuation: continuation, outbound: outbound, pending: pending)
      group.cancelAll()
      return outcome
    }
    switch outcome {
    case .close(let code, let reason):
      // Bounded: a client that stopped reading must not hold the handler.
      try? await withTimeout(Self.closeTimeout, timedOut: { SlowClient() }) {
        try await outbound.close(code, reason: reason)
      }
    case .failed(let error):
      throw error
    case .gone:
      break
    }
  }

  /// Follows the client's messages until the connection should end.
  private func converse(
    id: String, authorization: String?, commands: AsyncStream<Command>,
    continuation: AsyncStream<Command>.Continuation, outbound: WebSocketOutboundWriter, pending: PendingCount
  ) async -> Outcome {
    var user: Inspect_Session_V1_User?
    var subscription: Task<Void, Never>?
    var generation = 0
    var allowance = Self.resumeBurst
    var lastResume = ContinuousClock.now

    func send(_ object: [String: Any]) async {
      guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
      let text = String(decoding: data, as: UTF8.self)
      try? await withTimeout(Self.writeTimeout, timedOut: { SlowClient() }) { try await outbound.write(.text(text)) }
    }
    func sendError(_ error: RPCError) async {
      await send(["type": "error", "error": ["code": RPCMetrics.statusName(error.code), "message": error.message]])
    }
    func stopSubscription() async {
      guard let running = subscription else { return }
      running.cancel()
      await running.value
      subscription = nil
    }

    var outcome = Outcome.gone
    conversation: for await command in commands.cancelOnGracefulShutdown() {
      switch command {
      case .firstMessageLate:
        guard generation == 0 else { continue }
        let seconds = firstMessageTimeout.components.seconds
        await sendError(RPCError(code: .unauthenticated, message: "no resume message within \(seconds) s"))
        outcome = .close(.policyViolation, "no resume message")
        break conversation
      case .flooded:
        await sendError(
          RPCError(
            code: .resourceExhausted,
            message: "more than \(Self.maxPendingMessages) messages were waiting: wait for the answers"))
        outcome = .close(.policyViolation, "too many messages")
        break conversation
      case .readFailed(let error):
        outcome = .failed(error)
        break conversation
      case .invalid(let reason):
        pending.decrement()
        await sendError(RPCError(code: .invalidArgument, message: reason))
        if generation == 0 {
          outcome = .close(.policyViolation, "the first message must be a resume message")
          break conversation
        }
      case .ended(let ended, let error):
        guard ended == generation else { continue }
        if let error {
          await sendError(error)
          outcome = .close(.unexpectedServerError, "the session's event stream broke: resume")
        } else {
          // Subscribe streams end only when SessionService stops: the client reconnects.
          outcome = .close(Self.serviceRestart, "SessionService is restarting: resume")
        }
        break conversation
      case .message(.resume(let after, let token)):
        pending.decrement()
        let now = ContinuousClock.now
        let elapsed = (now - lastResume).components
        allowance = min(Self.resumeBurst, allowance + Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18)
        lastResume = now
        guard allowance >= 1 else {
          await sendError(
            RPCError(
              code: .resourceExhausted,
              message: "too many resume messages: \(Int(Self.resumeBurst)) at once, then one a second"))
          continue
        }
        allowance -= 1
        if generation == 0 {
          do throws(RPCError) {
            // The token of the message, else the upgrade's Authorization header.
            guard let credential = token.map({ "Bearer \($0)" }) ?? authorization else {
              throw RPCError(
                code: .unauthenticated,
                message: "send the token in the resume message ('token') or as 'Authorization: Bearer <token>'")
            }
            do {
              user = try await authenticator.authenticate(authorization: credential)
            } catch {
              throw (error as? RPCError) ?? downstream.map(error)
            }
            try await checkSession(id, user: user!)
          } catch {
            await sendError(error)
            outcome = .close(.policyViolation, "not subscribed")
            break conversation
          }
        } else if token != nil {
          await sendError(RPCError(code: .invalidArgument, message: "the token goes in the first resume message only"))
          continue
        }
        // The previous subscription stops writing before the new one starts.
        await stopSubscription()
        generation += 1
        await send(["type": "subscribed", "sessionId": id, "afterSeq": after])
        subscription = follow(id: id, after: after, user: user!, generation: generation, outbound: outbound) {
          continuation.yield($0)
        }
      }
    }
    await stopSubscription()
    return outcome
  }

  /// Writes the session's events after `after` until the stream ends, then reports how.
  private func follow(
    id: String, after: UInt64, user: Inspect_Session_V1_User, generation: Int, outbound: WebSocketOutboundWriter,
    report: @escaping @Sendable (Command) -> Void
  ) -> Task<Void, Never> {
    let (sessions, downstream, metadata) = (self.sessions, self.downstream, Self.metadata(user))
    return Task {
      do {
        try await SessionEventStream.follow(sessions: sessions, id: id, after: after, metadata: metadata) { events in
          let text = Self.eventsMessage(sessionID: id, events)
          try await withTimeout(Self.writeTimeout, timedOut: { SlowClient() }) {
            try await outbound.write(.text(text))
          }
        }
        if !Task.isCancelled { report(.ended(generation: generation, nil)) }
      } catch let error as SlowClient {
        if !Task.isCancelled {
          report(.ended(generation: generation, RPCError(code: .resourceExhausted, message: error.description)))
        }
      } catch {
        if !Task.isCancelled { report(.ended(generation: generation, downstream.map(error))) }
      }
    }
  }

  /// `{"type":"events","events":[…]}` from the frames the SSE stream also uses (encoded once).
  static func eventsMessage(sessionID: String, _ events: [Inspect_Session_V1_SessionEvent]) -> String {
    #"{"type":"events","events":["#
      + events.map { FrameCache.shared.json(for: $0, sessionID: sessionID) }.joined(separator: ",") + "]}"
  }

}

/// A message from a WebSocket client.
enum ClientMessage: Sendable, Equatable {
  /// Start (or move) the stream after `afterSeq`; the first one may carry the token.
  case resume(afterSeq: UInt64, token: String?)

  struct Invalid: Error, CustomStringConvertible {
    var description: String
  }

  /// The fields a resume message may have, as JSON gives them.
  private struct Fields: Decodable {
    var type: String?
    var afterSeq: UInt64?
    var token: String?

    enum CodingKeys: String, CodingKey {
      case type, afterSeq, token
    }

    init(from decoder: any Decoder) throws {
      let container = try decoder.container(keyedBy: CodingKeys.self)
      type = try? container.decodeIfPresent(String.self, forKey: .type)
      token = try? container.decodeIfPresent(String.self, forKey: .token)
      // A number, or a string of one (as the protobuf JSON mapping writes 64-bit numbers).
      if !container.contains(.afterSeq) || (try? container.decodeNil(forKey: .afterSeq)) == true {
        afterSeq = 0
      } else if let number = try? container.decode(UInt64.self, forKey: .afterSeq) {
        afterSeq = number
      } else if let text = try? container.decode(String.self, forKey: .afterSeq),
        !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
      {
        afterSeq = UInt64(text)
      } else {
        afterSeq = nil
      }
    }
  }

  init(_ message: WebSocketMessage) throws {
    guard case .text(let text) = message else {
      throw Invalid(description: "messages are JSON text, not binary")
    }
    let data = Data(text.utf8)
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let fields = try? JSONDecoder().decode(Fields.self, from: data)
    else {
      throw Invalid(description: "the message is not a JSON object: \(text.prefix(80))")
    }
    guard let type = fields.type else {
      throw Invalid(description: "the message has no 'type' string (the only type is 'resume')")
    }
    guard type == "resume" else {
      throw Invalid(description: "unknown message type '\(type)' (the only type is 'resume')")
    }
    let unknown = Set(object.keys).subtracting(["type", "afterSeq", "token"])
    guard unknown.isEmpty else {
      throw Invalid(description: "unknown fields in a resume message: \(unknown.sorted().joined(separator: ", "))")
    }
    guard let after = fields.afterSeq else {
      throw Invalid(description: "afterSeq must be a sequence number (a whole number from 0)")
    }
    if let given = object["token"], !(given is NSNull), fields.token?.isEmpty ?? true {
      throw Invalid(description: "token must be a non-empty string")
    }
    self = .resume(afterSeq: after, token: fields.token)
  }
}
