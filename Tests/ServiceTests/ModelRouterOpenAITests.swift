import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import NIOHTTP1
import Synchronization
import Testing

@testable import ModelRouter

private typealias F = ModelRouterFixtures

/// The OpenAI provider's settings pointed at a stand-in.
private func settings(_ standIn: OpenAIStandIn, key: String? = "sk-test") throws -> OpenAISettings {
  try OpenAISettings(baseURL: standIn.baseURL, apiKey: key, defaultModel: "test-model")
}

/// An HTTP error from the provider and what the caller must see.
struct ModelRouterErrorCase: Sendable, CustomTestStringConvertible {
  var status: Int
  var type: String
  var code: String?
  var expectedCode: RPCError.Code
  var expectedType: String
  var testDescription: String { "HTTP \(status) \(code ?? type) → \(expectedCode) \(expectedType)" }

  static let all: [ModelRouterErrorCase] = [
    .init(
      status: 401, type: "invalid_request_error", code: "invalid_api_key", expectedCode: .unauthenticated,
      expectedType: "authentication"),
    .init(
      status: 429, type: "requests", code: "rate_limit_exceeded", expectedCode: .resourceExhausted,
      expectedType: "rate_limited"),
    .init(status: 500, type: "server_error", code: nil, expectedCode: .unavailable, expectedType: "unavailable"),
    .init(status: 503, type: "server_error", code: nil, expectedCode: .unavailable, expectedType: "unavailable"),
    .init(
      status: 400, type: "invalid_request_error", code: "context_length_exceeded", expectedCode: .invalidArgument,
      expectedType: "context_too_long"),
    .init(
      status: 400, type: "invalid_request_error", code: nil, expectedCode: .invalidArgument,
      expectedType: "invalid_request"),
  ]
}

@Suite("ModelRouter: the OpenAI provider against a Chat Completions stand-in")
struct ModelRouterOpenAITests {
  @Test(
    "text and a tool call stream through, fragmented arguments reassemble, and the tool result goes back in the next request"
  )
  func toolCallRoundTrip() async throws {
    let call = OpenAIStandIn.ToolCall(
      id: "call_abc", name: "read_file", arguments: #"{"path": "src/calc.py", "limit": 200}"#)
    let replies: [OpenAIStandIn.Reply] = [
      .toolCalls([call], text: "Let me look at the file.", usage: (prompt: 120, completion: 18)),
      .text("The bug is on line 2."),
    ]
    try await withOpenAIStandIn(replies) { standIn in
      try await withModelRouter(openAI: try settings(standIn)) { client, _ in
        var messages = [F.system("You are a careful engineer."), F.user("Why does add fail?")]
        let first = try await client.answer(F.request(model: "openai:test-model", messages, tools: [F.readFile]))
        #expect(first.problems.isEmpty, "\(first.problems)")
        #expect(first.textDeltas.count > 1)
        #expect(first.text == "Let me look at the file.")
        let made = try #require(first.toolCalls.first)
        #expect(made.id == "call_abc")
        #expect(made.name == "read_file")
        #expect(made.fragments.count >= 3)
        #expect(try made.argumentsObject() == ["path": "src/calc.py", "limit": 200] as NSDictionary)
        #expect(first.usage?.inputTokens == 120)
        #expect(first.usage?.outputTokens == 18)
        #expect(first.finish?.reason == .toolCalls)
        #expect(first.finish?.model == "openai:test-model")
        #expect(first.finish?.provider == "openai")

        messages += [
          F.assistant(first.text, calls: [(made.id, made.name, made.arguments)]),
          F.toolResult(made.id, "def add(a, b):\n    return a - b\n"),
        ]
        let second = try await client.answer(F.request(model: "openai:test-model", messages, tools: [F.readFile]))
        #expect(second.text == "The bug is on line 2.")
        #expect(second.finish?.reason == .stop)
      }
      let requests = standIn.requests
      try #require(requests.count == 2)
      #expect(requests[0].path == "/v1/chat/completions")
      #expect(requests[0].authorization == "Bearer sk-test")
      #expect(requests[0].model == "test-model")
      #expect(requests[0].json["stream"] as? Bool == true)
      #expect((requests[0].json["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true)
      #expect(requests[0].messages.map(\.role) == ["system", "user"])
      #expect(requests[0].toolNames == ["read_file"])
      let tool = (requests[0].json["tools"] as? [[String: Any]])?.first
      #expect(tool?["type"] as? String == "function")
      let parameters = (tool?["function"] as? [String: Any])?["parameters"] as? NSDictionary
      let schema = try JSONSerialization.jsonObject(with: Data(F.readFileSchema.utf8)) as? NSDictionary
      #expect(parameters == schema)

      let sent = requests[1].messages
      #expect(sent.map(\.role) == ["system", "user", "assistant", "tool"])
      #expect(sent[2].toolCalls == [call])
      #expect(sent[2].content == "Let me look at the file.")
      #expect(sent[3].toolCallID == "call_abc")
      #expect(sent[3].content == "def add(a, b):\n    return a - b\n")
    }
  }

  @Test("a bare model name goes to the OpenAI provider, and a request without a model takes its default")
  func bareAndDefaultModels() async throws {
    try await withOpenAIStandIn([.text("one"), .text("two")]) { standIn in
      try await withModelRouter(openAI: try settings(standIn, key: nil)) { client, _ in
        let bare = try await client.answer(F.request(model: "qwen2.5-coder:7b", [F.user("hi")]))
        #expect(bare.finish?.model == "openai:qwen2.5-coder:7b")
        let defaulted = try await client.answer(F.request([F.user("hi")]))
        #expect(defaulted.text == "two")
        #expect(defaulted.finish?.model == "openai:test-model")
      }
      #expect(standIn.requests.map(\.model) == ["qwen2.5-coder:7b", "test-model"])
      #expect(standIn.requests.first?.authorization == nil)
    }
  }

  @Test("provider errors map to gRPC codes with inspect-model-error", arguments: ModelRouterErrorCase.all)
  func errorMapping(_ errorCase: ModelRouterErrorCase) async throws {
    let reply = OpenAIStandIn.Reply.error(
      status: errorCase.status, type: errorCase.type, code: errorCase.code, message: "the stand-in says no")
    try await withOpenAIStandIn([reply]) { standIn in
      try await withModelRouter(openAI: try settings(standIn)) { client, _ in
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: "openai:test-model", [F.user("hi")]))
        }
        #expect(error?.code == errorCase.expectedCode)
        #expect(modelErrorType(error) == errorCase.expectedType)
        #expect(error?.message.contains("the stand-in says no") == true, "\(error?.message ?? "")")
      }
    }
  }

  @Test("an unreachable provider, or a stream that stops before finishing, is UNAVAILABLE (unavailable)")
  func unavailable() async throws {
    let truncated = OpenAIStandIn.Reply.raw(
      #"data: {"choices":[{"index":0,"delta":{"content":"Half an ans"},"finish_reason":null}]}"# + "\n\n")
    let closedBaseURL = try await withOpenAIStandIn([truncated]) { standIn in
      try await withModelRouter(openAI: try settings(standIn)) { client, _ in
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: "openai:test-model", [F.user("hi")]))
        }
        #expect(error?.code == .unavailable)
        #expect(modelErrorType(error) == "unavailable")
        #expect(error?.message.contains("ended before the model finished") == true, "\(error?.message ?? "")")
      }
      return standIn.baseURL
    }
    // The stand-in has stopped, so nothing listens on its port any more.
    var gone = try OpenAISettings(baseURL: closedBaseURL, apiKey: "sk-test", defaultModel: "test-model")
    gone.connectTimeout = .milliseconds(500)
    try await withModelRouter(openAI: gone) { client, _ in
      let error = await #expect(throws: RPCError.self) {
        _ = try await client.answer(F.request(model: "openai:test-model", [F.user("hi")]))
      }
      #expect(error?.code == .unavailable)
      #expect(modelErrorType(error) == "unavailable")
      #expect(error?.message.contains("cannot reach") == true, "\(error?.message ?? "")")
    }
  }

  @Test("an error event mid-stream ends the call with its type after the text already sent")
  func errorMidStream() async throws {
    let stream =
      #"data: {"choices":[{"index":0,"delta":{"content":"Partial"},"finish_reason":null}]}"# + "\n\n"
      + #"data: {"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}"#
      + "\n\n"
    try await withOpenAIStandIn([.raw(stream)]) { standIn in
      try await withModelRouter(openAI: try settings(standIn)) { client, _ in
        let texts = TextCollector()
        let error = await #expect(throws: RPCError.self) {
          try await client.generate(F.request(model: "openai:test-model", [F.user("hi")])) { response in
            for try await message in response.messages { texts.append(message.textDelta.text) }
          }
        }
        #expect(texts.value == ["Partial"])
        #expect(error?.code == .resourceExhausted)
        #expect(modelErrorType(error) == "rate_limited")
      }
    }
  }
}

/// Collects text deltas from inside a response handler.
private final class TextCollector: Sendable {
  private let storage = Mutex<[String]>([])
  func append(_ text: String) { storage.withLock { $0.append(text) } }
  var value: [String] { storage.withLock { $0 } }
}

// MARK: - Wire parsing

@Suite("ModelRouter: server-sent events and chunk translation")
struct ModelRouterWireTests {
  @Test("events are decoded across arbitrary byte boundaries, with CRLF, comments and multi-line data")
  func serverSentEvents() throws {
    let text = ": comment\r\ndata: {\"a\":1}\r\n\r\nevent: ping\ndata: line one\ndata: line two\n\ndata: [DONE]\n\n"
    let bytes = Array(text.utf8)
    for cut in 0...bytes.count {
      var decoder = ServerSentEventDecoder()
      var events = try decoder.feed(bytes[..<cut])
      events += try decoder.feed(bytes[cut...])
      if let last = decoder.finish() { events.append(last) }
      #expect(
        events == [
          ServerSentEvent(event: nil, data: #"{"a":1}"#), ServerSentEvent(event: "ping", data: "line one\nline two"),
          ServerSentEvent(event: nil, data: "[DONE]"),
        ], "cut at \(cut)")
    }
  }

  @Test("a tool call whose name arrives after its first arguments still starts before them, and ends at finish")
  func lateToolCallName() throws {
    func chunk(_ json: String) throws -> OpenAIChatChunk {
      try JSONDecoder().decode(OpenAIChatChunk.self, from: Data(json.utf8))
    }
    var translator = OpenAIStreamTranslator()
    var out = translator.accept(
      try chunk(#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}}]}"#))
    #expect(out.isEmpty)
    out += translator.accept(
      try chunk(
        #"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":":1}"}}]}}]}"#))
    out += translator.accept(try chunk(#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#))
    out += translator.finish(model: "openai:m", provider: "openai")
    let answer = ModelRouterAnswer(out)
    #expect(answer.problems.isEmpty, "\(answer.problems)")
    #expect(answer.toolCalls.first?.id == "c1")
    #expect(answer.toolCalls.first?.arguments == #"{"a":1}"#)
    #expect(answer.finish?.reason == .toolCalls)
  }
}

@Suite("ModelRouter: retries of failed model calls")
struct ModelRouterRetryTests {
  /// Three attempts, waits of a few milliseconds.
  static let fast = ModelRetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(5), maxDelay: .milliseconds(20))

  @Test("a 429 with retry-after, then a 500, then an answer: the caller sees only the answer")
  func retriesUntilAnswered() async throws {
    let replies: [OpenAIStandIn.Reply] = [
      .error(status: 429, type: "requests", code: "rate_limit_exceeded", message: "slow down", retryAfter: "0"),
      .error(status: 500, type: "server_error", message: "boom"),
      .text("Finally."),
    ]
    try await withOpenAIStandIn(replies) { standIn in
      try await withModelRouter(openAI: try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk"), retry: Self.fast) {
        client, _ in
        let answer = try await client.answer(F.request(model: "openai:m", [F.user("hi")]))
        #expect(answer.text == "Finally.")
        #expect(answer.problems.isEmpty)
      }
      #expect(standIn.requests.count == 3)
    }
  }

  @Test("bad credentials, a used-up quota and a rejected request are not retried")
  func permanentErrorsAreNotRetried() async throws {
    let cases: [(OpenAIStandIn.Reply, String)] = [
      (
        .error(status: 401, type: "invalid_request_error", code: "invalid_api_key", message: "bad key"),
        "authentication"
      ),
      (.error(status: 429, type: "insufficient_quota", code: "insufficient_quota", message: "quota"), "rate_limited"),
      (.error(status: 400, type: "invalid_request_error", message: "bad"), "invalid_request"),
    ]
    for (reply, type) in cases {
      try await withOpenAIStandIn([reply], whenExhausted: .text("should not be asked")) { standIn in
        try await withModelRouter(openAI: try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk"), retry: Self.fast)
        {
          client, _ in
          let error = await #expect(throws: RPCError.self) {
            _ = try await client.answer(F.request(model: "openai:m", [F.user("hi")]))
          }
          #expect(modelErrorType(error) == type)
        }
        #expect(standIn.requests.count == 1, "\(type) was retried")
      }
    }
  }

  @Test("when retries run out the last error is reported; after tokens were streamed nothing is retried")
  func exhaustedAndStreamed() async throws {
    try await withOpenAIStandIn([], whenExhausted: .error(status: 503, type: "server_error", message: "down")) {
      standIn in
      try await withModelRouter(openAI: try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk"), retry: Self.fast) {
        client, _ in
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: "openai:m", [F.user("hi")]))
        }
        #expect(error?.code == .unavailable)
      }
      #expect(standIn.requests.count == 3)
    }
    let partial =
      #"data: {"choices":[{"index":0,"delta":{"content":"Half an answer"},"finish_reason":null}]}"# + "\n\n"
      + #"data: {"error":{"message":"Overloaded","type":"overloaded_error","code":null}}"# + "\n\n"
    try await withOpenAIStandIn([.raw(partial)], whenExhausted: .text("a second answer")) { standIn in
      try await withModelRouter(openAI: try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk"), retry: Self.fast) {
        client, _ in
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: "openai:m", [F.user("hi")]))
        }
        #expect(modelErrorType(error) == "overloaded")
      }
      #expect(standIn.requests.count == 1)
    }
  }

  @Test("retry-after-ms, retry-after in seconds and as an HTTP date are read; a wait past the longest is not waited")
  func retryAfterHeaders() {
    var headers = HTTPHeaders([("retry-after-ms", "150"), ("retry-after", "9")])
    #expect(ModelRetryPolicy.retryAfter(headers) == .milliseconds(150))
    headers = HTTPHeaders([("retry-after", "2")])
    #expect(ModelRetryPolicy.retryAfter(headers) == .seconds(2))
    let now = Date(timeIntervalSince1970: 1_445_412_470)  // Wed, 21 Oct 2015 07:27:50 GMT
    headers = HTTPHeaders([("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])
    #expect(ModelRetryPolicy.retryAfter(headers, now: now) == .seconds(10))
    #expect(ModelRetryPolicy.retryAfter(HTTPHeaders([("retry-after", "soon")])) == nil)
    let policy = ModelRetryPolicy()
    #expect(policy.delay(after: 1, error: ModelError.rateLimited("x").waiting(.seconds(120))) == nil)
    #expect(policy.delay(after: 1, error: ModelError.rateLimited("x").waiting(.seconds(3))) == .seconds(3))
    #expect(policy.delay(after: 3, error: ModelError.unavailable("x")) == nil)
    let backoff = policy.delay(after: 2, error: ModelError.unavailable("x"))
    #expect(backoff.map { $0 >= .milliseconds(500) && $0 <= .seconds(1) } == true)
  }
}
