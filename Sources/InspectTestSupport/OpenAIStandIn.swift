import Foundation
import Hummingbird
import InspectKit
import Logging
import MultipartKit
import ServiceLifecycle
import Synchronization

/// A loopback stand-in for an OpenAI-compatible Chat Completions server, for tests and
/// benchmarks that need a model without a network. It answers `POST /v1/chat/completions` with
/// scripted ``Reply``s in order, streamed as SSE the way OpenAI streams them (text in several
/// chunks, each tool call's arguments split across several chunks, then `finish_reason`, a usage
/// chunk and `data: [DONE]`), and records every request it receives so a test can assert what was
/// sent (e.g. the tool results of the previous turn). It binds 127.0.0.1 only. It also answers
/// Anthropic's `POST /v1/messages` from the same script (with `.raw` event streams and `.error`
/// replies), so one stand-in serves tests of either provider.
///
/// ```swift
/// try await withOpenAIStandIn([.toolCalls([.init(name: "read_file", arguments: #"{"path":"a.py"}"#)]), .text("Done.")]) { standIn in
///   // point the OpenAI provider at standIn.baseURL, run the conversation, then:
///   #expect(standIn.requests[1].messages.last?.role == "tool")
/// }
/// ```
public final class OpenAIStandIn: Sendable {
  private let state: Mutex<State>

  private struct State {
    var port = 0
    var replies: [Reply]
    var whenExhausted: Reply?
    var requests: [ReceivedRequest] = []
    var inFlight = 0
    var mostInFlight = 0
    var abandoned = 0
  }

  fileprivate init(replies: [Reply], whenExhausted: Reply?) {
    state = Mutex(State(replies: replies, whenExhausted: whenExhausted))
  }

  /// Where it listens (127.0.0.1 and the port it was given).
  public var address: HostAndPort { HostAndPort(host: "127.0.0.1", port: state.withLock { $0.port }) }

  /// The base URL to configure (`OPENAI_BASE_URL`): `http://127.0.0.1:<port>/v1`.
  public var baseURL: String { "http://\(address)/v1" }

  /// The requests received so far, oldest first.
  public var requests: [ReceivedRequest] { state.withLock { $0.requests } }

  /// The most requests it was answering at the same moment (from arrival to the end of the body).
  public var mostInFlight: Int { state.withLock { $0.mostInFlight } }

  /// Requests it is answering now.
  public var inFlight: Int { state.withLock { $0.inFlight } }

  /// Responses whose body could not be written to the end because the client went away.
  public var abandoned: Int { state.withLock { $0.abandoned } }

  fileprivate func began() {
    state.withLock {
      $0.inFlight += 1
      $0.mostInFlight = max($0.mostInFlight, $0.inFlight)
    }
  }

  fileprivate func ended(completed: Bool) {
    state.withLock {
      $0.inFlight -= 1
      if !completed { $0.abandoned += 1 }
    }
  }

  /// Appends replies to the script.
  public func enqueue(_ replies: Reply...) {
    state.withLock { $0.replies += replies }
  }

  fileprivate func bound(to port: Int) {
    state.withLock { $0.port = port }
  }

  /// Records `request` and takes the next reply (a 500 naming the problem once the script is used up).
  fileprivate func next(for request: ReceivedRequest) -> Reply {
    state.withLock { state in
      state.requests.append(request)
      if !state.replies.isEmpty { return state.replies.removeFirst() }
      return state.whenExhausted
        ?? .error(
          status: 500, type: "server_error",
          message: "the OpenAI stand-in has no scripted reply left for request \(state.requests.count)")
    }
  }
}

// MARK: - Replies

extension OpenAIStandIn {
  /// A tool call the stand-in's model makes.
  public struct ToolCall: Sendable, Equatable {
    public var id: String
    public var name: String
    /// The arguments JSON, streamed in several fragments.
    public var arguments: String

    public init(id: String? = nil, name: String, arguments: String) {
      self.id = id ?? "call_standin_\(name)"
      self.name = name
      self.arguments = arguments
    }
  }

  /// One scripted answer: a streamed completion, an HTTP error, or raw event-stream bytes.
  public struct Reply: Sendable {
    enum Kind: Sendable {
      case completion(text: String, toolCalls: [ToolCall], finishReason: String?, usage: (prompt: Int, completion: Int))
      case error(status: Int, body: String, retryAfter: String?)
      case raw(String)
      case endless(every: Duration)
      case transcription(text: String, language: String?, duration: Double?)
    }

    let kind: Kind
    /// A pause before each chunk (zero: as fast as possible).
    public var chunkDelay: Duration = .zero
    /// A pause before the response head (a slow first byte).
    public var headDelay: Duration = .zero
    /// Answer a completion as one JSON `chat.completion` even when the request asked for a
    /// stream (a server that ignores `stream: true`).
    public var ignoresStream = false

    /// Answer text, streamed a word or so per chunk; finish reason `stop`.
    public static func text(_ text: String, usage: (prompt: Int, completion: Int) = (12, 5)) -> Reply {
      Reply(kind: .completion(text: text, toolCalls: [], finishReason: "stop", usage: usage))
    }

    /// Tool calls (after optional text), each call's arguments split across several chunks;
    /// finish reason `tool_calls`.
    public static func toolCalls(
      _ calls: [ToolCall], text: String = "", usage: (prompt: Int, completion: Int) = (12, 5)
    ) -> Reply {
      Reply(kind: .completion(text: text, toolCalls: calls, finishReason: "tool_calls", usage: usage))
    }

    /// A completion with any `finish_reason` (`length`, `content_filter`…; nil sends none).
    public static func completion(
      text: String, toolCalls: [ToolCall] = [], finishReason: String?, usage: (prompt: Int, completion: Int) = (12, 5)
    ) -> Reply {
      Reply(kind: .completion(text: text, toolCalls: toolCalls, finishReason: finishReason, usage: usage))
    }

    /// An HTTP error with OpenAI's body `{"error": {message, type, code}}` and, when given, a
    /// `retry-after` header (seconds or an HTTP date).
    public static func error(
      status: Int, type: String, code: String? = nil, message: String, retryAfter: String? = nil
    ) -> Reply {
      var error: [String: Any] = ["message": message, "type": type]
      error["code"] = code ?? NSNull()
      return Reply(kind: .error(status: status, body: jsonText(["error": error]), retryAfter: retryAfter))
    }

    /// A 200 `text/event-stream` body sent exactly as given (for broken or unusual streams).
    public static func raw(_ eventStream: String) -> Reply {
      Reply(kind: .raw(eventStream))
    }

    /// A transcription (`/v1/audio/transcriptions`), as `verbose_json` when `language` and
    /// `duration` are given, else as plain `json` (`{"text"}`).
    public static func transcription(_ text: String, language: String? = nil, duration: Double? = nil) -> Reply {
      Reply(kind: .transcription(text: text, language: language, duration: duration))
    }

    /// A stream that never ends: a text delta every `interval` until the client goes away.
    public static func endless(every interval: Duration = .milliseconds(20)) -> Reply {
      Reply(kind: .endless(every: interval))
    }

    /// The same reply after a pause before its head.
    public func afterHead(_ delay: Duration) -> Reply {
      var copy = self
      copy.headDelay = delay
      return copy
    }

    /// The same completion answered as one JSON body whatever the request asked.
    public func ignoringStream() -> Reply {
      var copy = self
      copy.ignoresStream = true
      return copy
    }

    /// The same reply with a pause before each chunk.
    public func delayed(_ delay: Duration) -> Reply {
      var copy = self
      copy.chunkDelay = delay
      return copy
    }
  }
}

// MARK: - Recorded requests

extension OpenAIStandIn {
  /// A request the stand-in received.
  public struct ReceivedRequest: Sendable {
    public var path: String
    /// The `Authorization` header, if any.
    public var authorization: String?
    /// Every header, by lowercase name (the last value of a repeated one).
    public var headers: [String: String] = [:]
    /// The raw body.
    public var body: Data
    /// A `multipart/form-data` upload's text fields (transcriptions).
    public var form: [String: String] = [:]
    /// A `multipart/form-data` upload's `file`.
    public var upload: Upload?

    /// An uploaded file.
    public struct Upload: Sendable {
      public var fileName: String?
      public var contentType: String?
      public var bytes: Data
    }

    /// The body as a JSON object (empty when it is not one).
    public var json: [String: Any] {
      (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }

    public var model: String? { json["model"] as? String }

    /// Whether the request asked for a stream (`"stream": true`).
    public var stream: Bool { json["stream"] as? Bool ?? false }

    /// The messages sent, simplified: content as text (parts' texts joined), tool calls, tool call id.
    public var messages: [Message] {
      (json["messages"] as? [[String: Any]] ?? []).map(Message.init)
    }

    /// The names of the offered tools.
    public var toolNames: [String] {
      (json["tools"] as? [[String: Any]] ?? []).compactMap { ($0["function"] as? [String: Any])?["name"] as? String }
    }

    /// One message of a received request.
    public struct Message: Sendable, Equatable {
      public var role: String
      public var content: String?
      public var toolCallID: String?
      public var toolCalls: [ToolCall]

      init(_ object: [String: Any]) {
        role = object["role"] as? String ?? ""
        if let text = object["content"] as? String {
          content = text
        } else if let parts = object["content"] as? [[String: Any]] {
          content = parts.compactMap { $0["text"] as? String }.joined()
        }
        toolCallID = object["tool_call_id"] as? String
        toolCalls = (object["tool_calls"] as? [[String: Any]] ?? []).map { call in
          let function = call["function"] as? [String: Any] ?? [:]
          return ToolCall(
            id: call["id"] as? String, name: function["name"] as? String ?? "",
            arguments: function["arguments"] as? String ?? "")
        }
      }
    }
  }
}

// MARK: - Running

/// Runs an ``OpenAIStandIn`` on 127.0.0.1 (a free port) answering with `replies` in order (then
/// `whenExhausted`, else a 500 saying the script is used up) for the duration of `body`.
public func withOpenAIStandIn<T: Sendable>(
  _ replies: [OpenAIStandIn.Reply],
  whenExhausted: OpenAIStandIn.Reply? = nil,
  _ body: @Sendable (OpenAIStandIn) async throws -> T
) async throws -> T {
  let standIn = OpenAIStandIn(replies: replies, whenExhausted: whenExhausted)
  let router = Router()
  @Sendable func answer(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
    let bytes = try await request.body.collect(upTo: 64 << 20)
    var headers: [String: String] = [:]
    for field in request.headers { headers[field.name.canonicalName] = field.value }
    let received = OpenAIStandIn.ReceivedRequest(
      path: request.uri.path, authorization: request.headers[.authorization], headers: headers,
      body: Data(bytes.readableBytesView))
    standIn.began()
    let reply = standIn.next(for: received)
    if reply.headDelay > .zero { try? await Task.sleep(for: reply.headDelay) }
    return reply.response(
      model: received.model ?? "stand-in", stream: received.stream || request.uri.path.hasSuffix("/messages")
    ) { completed in
      standIn.ended(completed: completed)
    }
  }
  router.post("/v1/chat/completions", use: answer)
  router.post("/v1/messages", use: answer)
  router.post("/v1/audio/transcriptions") { request, _ -> Response in
    let bytes = try await request.body.collect(upTo: 64 << 20)
    var received = OpenAIStandIn.ReceivedRequest(
      path: request.uri.path, authorization: request.headers[.authorization], body: Data(bytes.readableBytesView))
    for field in request.headers { received.headers[field.name.canonicalName] = field.value }
    let contentType = request.headers[.contentType] ?? ""
    guard contentType.hasPrefix("multipart/form-data"),
      let boundary = contentType.components(separatedBy: "boundary=").last, boundary != contentType
    else {
      return OpenAIStandIn.Reply.error(
        status: 400, type: "invalid_request_error", message: "expected multipart/form-data with a boundary"
      ).response(model: "", stream: false) { _ in }
    }
    do {
      for part in try multipartParts(bytes, boundary: boundary) {
        guard let name = part.name else { continue }
        if name == "file" {
          let disposition = part.headers.first(name: "Content-Disposition") ?? ""
          received.upload = .init(
            fileName: disposition.components(separatedBy: "filename=\"").dropFirst().first?
              .components(separatedBy: "\"").first,
            contentType: part.headers.first(name: "Content-Type"), bytes: Data(part.body.readableBytesView))
        } else {
          received.form[name] = String(buffer: part.body)
        }
      }
    } catch {
      return OpenAIStandIn.Reply.error(
        status: 400, type: "invalid_request_error", message: "the multipart form could not be read: \(error)"
      ).response(model: "", stream: false) { _ in }
    }
    standIn.began()
    return standIn.next(for: received).response(model: received.form["model"] ?? "", stream: false) {
      standIn.ended(completed: $0)
    }
  }
  return try await withHTTPStandIn(router) { baseURL in
    // The stand-in reports its address (tests configure it as OPENAI_BASE_URL).
    standIn.bound(to: Int(baseURL.split(separator: ":").last ?? "") ?? 0)
    return try await body(standIn)
  }
}

// MARK: - Streaming a reply

extension OpenAIStandIn.Reply {
  /// Arguments are cut into at least this many fragments (when long enough).
  static let argumentFragments = 3

  /// The response; `ended` is called when its body has been written (true) or the client went
  /// away first (false).
  func response(model: String, stream: Bool, ended: @escaping @Sendable (Bool) -> Void) -> Response {
    switch kind {
    case .error(let status, let body, let retryAfter):
      var fields: HTTPFields = [.contentType: "application/json"]
      if let retryAfter { fields[.retryAfter] = retryAfter }
      ended(true)
      return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: body)))
    case .raw(let text):
      return eventStream([text], ended: ended)
    case .endless(let interval):
      let chunk = #"data: {"choices":[{"index":0,"delta":{"content":"more "},"finish_reason":null}]}"# + "\n\n"
      return Response(
        status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
        body: ResponseBody { writer in
          do {
            while true {
              try await Task.sleep(for: interval)
              try await writer.write(ByteBuffer(string: chunk))
            }
          } catch {
            ended(false)
            throw error
          }
        })
    case .transcription(let text, let language, let duration):
      var object: [String: Any] = ["text": text]
      if let language { object["language"] = language }
      if let duration { object["duration"] = duration }
      ended(true)
      return Response(
        status: .ok, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(string: jsonText(object))))
    case .completion(let text, let toolCalls, let finishReason, let usage) where !stream || ignoresStream:
      ended(true)
      return Response(
        status: .ok, headers: [.contentType: "application/json"],
        body: .init(
          byteBuffer: ByteBuffer(
            string: completion(
              model: model, text: text, toolCalls: toolCalls, finishReason: finishReason, usage: usage))))
    case .completion(let text, let toolCalls, let finishReason, let usage):
      return eventStream(
        events(model: model, text: text, toolCalls: toolCalls, finishReason: finishReason, usage: usage), ended: ended)
    }
  }

  private func eventStream(_ pieces: [String], ended: @escaping @Sendable (Bool) -> Void) -> Response {
    let delay = chunkDelay
    return Response(
      status: .ok,
      headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
      body: ResponseBody { writer in
        do {
          for piece in pieces {
            // A long pause is spent writing SSE comments, so a client that went away is noticed.
            var left = delay
            while left > .zero {
              let step = min(left, .milliseconds(100))
              try await Task.sleep(for: step)
              left -= step
              if left > .zero { try await writer.write(ByteBuffer(string: ":\n\n")) }
            }
            // Each event goes out in two writes cut mid-line, so clients must reassemble lines.
            let bytes = Array(piece.utf8)
            let cut = bytes.count / 2
            try await writer.write(ByteBuffer(bytes: bytes[..<cut]))
            try await writer.write(ByteBuffer(bytes: bytes[cut...]))
          }
          try await writer.finish(nil)
        } catch {
          ended(false)
          throw error
        }
        ended(true)
      })
  }

  /// A non-streamed `chat.completion`, as OpenAI answers `"stream": false`.
  private func completion(
    model: String, text: String, toolCalls: [OpenAIStandIn.ToolCall], finishReason: String?,
    usage: (prompt: Int, completion: Int)
  ) -> String {
    var message: [String: Any] = ["role": "assistant", "content": text.isEmpty && !toolCalls.isEmpty ? NSNull() : text]
    if !toolCalls.isEmpty {
      message["tool_calls"] = toolCalls.map { call in
        ["id": call.id, "type": "function", "function": ["name": call.name, "arguments": call.arguments]]
      }
    }
    return jsonText([
      "id": "chatcmpl-standin", "object": "chat.completion", "created": 0, "model": model,
      "choices": [["index": 0, "message": message, "finish_reason": finishReason.map { $0 as Any } ?? NSNull()]],
      "usage": [
        "prompt_tokens": usage.prompt, "completion_tokens": usage.completion,
        "total_tokens": usage.prompt + usage.completion,
      ],
    ])
  }

  /// The SSE events of a completion, as OpenAI sends them.
  private func events(
    model: String, text: String, toolCalls: [OpenAIStandIn.ToolCall], finishReason: String?,
    usage: (prompt: Int, completion: Int)
  ) -> [String] {
    func chunk(_ choices: [[String: Any]], usage: [String: Any]? = nil) -> String {
      var object: [String: Any] = [
        "id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": choices,
      ]
      if let usage { object["usage"] = usage }
      return "data: \(jsonText(object))\n\n"
    }
    func delta(_ delta: [String: Any], finish: String? = nil) -> String {
      chunk([["index": 0, "delta": delta, "finish_reason": finish ?? NSNull()]])
    }
    var events = [": the stand-in is thinking\n\n", delta(["role": "assistant", "content": ""])]
    for word in words(text) { events.append(delta(["content": word])) }
    for (index, call) in toolCalls.enumerated() {
      events.append(
        delta([
          "tool_calls": [
            ["index": index, "id": call.id, "type": "function", "function": ["name": call.name, "arguments": ""]]
          ]
        ]))
      for fragment in fragments(call.arguments) {
        events.append(delta(["tool_calls": [["index": index, "function": ["arguments": fragment]]]]))
      }
    }
    events.append(delta([:], finish: finishReason))
    events.append(
      chunk(
        [],
        usage: [
          "prompt_tokens": usage.prompt, "completion_tokens": usage.completion,
          "total_tokens": usage.prompt + usage.completion,
        ]))
    events.append("data: [DONE]\n\n")
    return events
  }

  private func words(_ text: String) -> [String] {
    var pieces: [String] = []
    var current = ""
    for character in text {
      if !character.isWhitespace, current.last?.isWhitespace == true {
        pieces.append(current)
        current = ""
      }
      current.append(character)
    }
    if !current.isEmpty { pieces.append(current) }
    return pieces
  }

  private func fragments(_ arguments: String) -> [String] {
    let characters = Array(arguments)
    guard characters.count >= Self.argumentFragments else { return characters.isEmpty ? [] : [arguments] }
    let size = (characters.count + Self.argumentFragments - 1) / Self.argumentFragments
    return stride(from: 0, to: characters.count, by: size).map {
      String(characters[$0..<min($0 + size, characters.count)])
    }
  }
}

/// The parts of a `multipart/form-data` body, parsed strictly by MultipartKit.
private func multipartParts(_ body: ByteBuffer, boundary: String) throws -> [MultipartPart] {
  final class Collected {
    var parts: [MultipartPart] = []
    var current = MultipartPart(body: ByteBuffer())
  }
  let collected = Collected()
  let parser = MultipartParser(boundary: boundary)
  parser.onHeader = { name, value in collected.current.headers.add(name: name, value: value) }
  parser.onBody = { bytes in collected.current.body.writeBuffer(&bytes) }
  parser.onPartComplete = {
    collected.parts.append(collected.current)
    collected.current = MultipartPart(body: ByteBuffer())
  }
  try parser.execute(body)
  return collected.parts
}

/// Compact JSON with sorted keys.
private func jsonText(_ object: [String: Any]) -> String {
  let data =
    (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
  return String(decoding: data, as: UTF8.self)
}

// MARK: - Any HTTP stand-in

/// Runs `router` on 127.0.0.1 (a free port) for the duration of `body`, which gets the base URL
/// (`http://127.0.0.1:<port>`). For stand-ins of external services (Sentry, Datadog…) in tests.
public func withHTTPStandIn<T: Sendable>(
  _ router: Router<BasicRequestContext>, _ body: @Sendable (_ baseURL: String) async throws -> T
) async throws -> T {
  let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
  var logger = Logger(label: "inspect.test.http-stand-in")
  logger.logLevel = .warning
  let app = Application(
    router: router,
    configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "http-stand-in"),
    onServerRunning: { channel in
      portContinuation.yield(channel.localAddress?.port ?? 0)
      portContinuation.finish()
    },
    logger: logger)
  let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
  return try await withServiceGroup(group, onGroupEnd: { portContinuation.finish() }) {
    var port: Int?
    for await bound in ports { port = bound }
    guard let port, port > 0 else { throw ConfigurationError("the HTTP stand-in did not start listening on 127.0.0.1") }
    return try await body("http://127.0.0.1:\(port)")
  }
}
