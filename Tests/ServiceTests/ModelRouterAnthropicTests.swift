import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import ModelRouter

private typealias F = ModelRouterFixtures

private func settings(_ standIn: OpenAIStandIn) throws -> AnthropicSettings {
  // The stand-in's base URL ends in /v1, as a user might write it; the provider strips it.
  try AnthropicSettings(baseURL: standIn.baseURL, apiKey: "sk-ant-test", defaultModel: "claude-test")
}

/// One SSE event the way Anthropic writes it (`event:` line, then the JSON with the same type).
private func event(_ object: [String: Any]) -> String {
  let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
  return "event: \(object["type"] as? String ?? "")\ndata: \(String(decoding: data, as: UTF8.self))\n\n"
}

/// A streamed message: text, then a tool_use block whose input arrives in fragments, with a
/// `ping` and an event type the provider does not know mixed in.
private func toolUseStream(text: String, tool: (id: String, name: String), fragments: [String]) -> String {
  [
    event(["type": "message_start", "message": ["id": "msg_1", "usage": ["input_tokens": 25, "output_tokens": 1]]]),
    event(["type": "content_block_start", "index": 0, "content_block": ["type": "text", "text": ""]]),
    event(["type": "ping"]),
    event(["type": "content_block_delta", "index": 0, "delta": ["type": "text_delta", "text": String(text.prefix(5))]]),
    event([
      "type": "content_block_delta", "index": 0, "delta": ["type": "text_delta", "text": String(text.dropFirst(5))],
    ]),
    event(["type": "content_block_stop", "index": 0]),
    event(["type": "something_new", "index": 0]),
    event([
      "type": "content_block_start", "index": 1,
      "content_block": ["type": "tool_use", "id": tool.id, "name": tool.name, "input": [:] as [String: Any]],
    ]),
  ].joined()
    + fragments.map {
      event(["type": "content_block_delta", "index": 1, "delta": ["type": "input_json_delta", "partial_json": $0]])
    }.joined()
    + [
      event(["type": "content_block_stop", "index": 1]),
      event(["type": "message_delta", "delta": ["stop_reason": "tool_use"], "usage": ["output_tokens": 17]]),
      event(["type": "message_stop"]),
    ].joined()
}

private func textStream(_ text: String) -> String {
  [
    event(["type": "message_start", "message": ["usage": ["input_tokens": 40, "output_tokens": 1]]]),
    event(["type": "content_block_start", "index": 0, "content_block": ["type": "text", "text": ""]]),
    event(["type": "content_block_delta", "index": 0, "delta": ["type": "text_delta", "text": text]]),
    event(["type": "content_block_stop", "index": 0]),
    event(["type": "message_delta", "delta": ["stop_reason": "end_turn"], "usage": ["output_tokens": 6]]),
    event(["type": "message_stop"]),
  ].joined()
}

@Suite("ModelRouter: the Anthropic provider against a Messages stand-in")
struct ModelRouterAnthropicTests {
  @Test(
    "text and a tool_use stream through (ping and unknown events skipped), and the tool result goes back as a tool_result block"
  )
  func toolUseRoundTrip() async throws {
    let replies: [OpenAIStandIn.Reply] = [
      .raw(
        toolUseStream(
          text: "Let me read it.", tool: ("toolu_01", "read_file"),
          fragments: [#"{"path": "#, #""src/calc.py", "#, #""limit": 200}"#])),
      .raw(textStream("The bug is on line 2.")),
    ]
    try await withOpenAIStandIn(replies) { standIn in
      try await withModelRouter(anthropic: try settings(standIn)) { client, _ in
        var messages = [F.system("You are a careful engineer."), F.user("Why does add fail?")]
        let first = try await client.answer(F.request(model: "anthropic:claude-test", messages, tools: [F.readFile]))
        #expect(first.problems.isEmpty, "\(first.problems)")
        #expect(first.text == "Let me read it.")
        let made = try #require(first.toolCalls.first)
        #expect(made.id == "toolu_01")
        #expect(made.name == "read_file")
        #expect(made.fragments.count == 3)
        #expect(made.ended)
        #expect(try made.argumentsObject() == ["path": "src/calc.py", "limit": 200] as NSDictionary)
        #expect(first.usage?.inputTokens == 25)
        #expect(first.usage?.outputTokens == 17)
        #expect(first.finish?.reason == .toolCalls)
        #expect(first.finish?.model == "anthropic:claude-test")
        #expect(first.finish?.provider == "anthropic")

        messages += [
          F.assistant(first.text, calls: [(made.id, made.name, made.arguments)]),
          F.toolResult(made.id, "def add(a, b):\n    return a - b\n"),
          F.toolResult("toolu_other", "no such file", isError: true),
        ]
        let second = try await client.answer(F.request(model: "anthropic:claude-test", messages, tools: [F.readFile]))
        #expect(second.text == "The bug is on line 2.")
        #expect(second.finish?.reason == .stop)
        #expect(second.usage?.outputTokens == 6)
      }
      let requests = standIn.requests
      try #require(requests.count == 2)
      #expect(requests[0].path == "/v1/messages")
      #expect(requests[0].headers["x-api-key"] == "sk-ant-test")
      #expect(requests[0].headers["anthropic-version"] == "2023-06-01")
      #expect(requests[0].json["model"] as? String == "claude-test")
      #expect(requests[0].json["stream"] as? Bool == true)
      #expect(requests[0].json["max_tokens"] as? Int == Int(AnthropicRequest.defaultMaxTokens))
      #expect(requests[0].json["system"] as? String == "You are a careful engineer.")
      let tool = (requests[0].json["tools"] as? [[String: Any]])?.first
      #expect(tool?["name"] as? String == "read_file")
      let schema = try JSONSerialization.jsonObject(with: Data(F.readFileSchema.utf8)) as? NSDictionary
      #expect(tool?["input_schema"] as? NSDictionary == schema)
      // user, assistant (text + tool_use), user (both tool results in one message).
      let sent = try #require(requests[1].json["messages"] as? [[String: Any]])
      #expect(sent.map { $0["role"] as? String } == ["user", "assistant", "user"])
      let assistant = sent[1]["content"] as? [[String: Any]] ?? []
      #expect(assistant.map { $0["type"] as? String } == ["text", "tool_use"])
      #expect(assistant.last?["input"] as? NSDictionary == ["path": "src/calc.py", "limit": 200] as NSDictionary)
      let results = sent[2]["content"] as? [[String: Any]] ?? []
      #expect(results.map { $0["tool_use_id"] as? String } == ["toolu_01", "toolu_other"])
      #expect(results.map { $0["is_error"] as? Bool } == [nil, true])
    }
  }

  @Test("an overloaded_error event after a 200 fails the call UNAVAILABLE typed overloaded")
  func overloadedMidStream() async throws {
    let stream =
      event(["type": "message_start", "message": ["usage": ["input_tokens": 10]]])
      + event(["type": "content_block_start", "index": 0, "content_block": ["type": "text", "text": ""]])
      + event(["type": "content_block_delta", "index": 0, "delta": ["type": "text_delta", "text": "Partial"]])
      + event(["type": "error", "error": ["type": "overloaded_error", "message": "Overloaded"]])
    try await withOpenAIStandIn([.raw(stream)]) { standIn in
      try await withModelRouter(anthropic: try settings(standIn)) { client, _ in
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: "anthropic:claude-test", [F.user("hi")]))
        }
        #expect(error?.code == .unavailable)
        #expect(modelErrorType(error) == "overloaded")
        #expect(error?.message.contains("Overloaded") == true)
      }
    }
  }

  @Test("HTTP errors map to their types, and a stream cut before message_stop is UNAVAILABLE")
  func errors() async throws {
    let cut =
      event(["type": "message_start", "message": ["usage": ["input_tokens": 10]]])
      + event(["type": "content_block_start", "index": 0, "content_block": ["type": "text", "text": ""]])
    let replies: [OpenAIStandIn.Reply] = [
      .error(status: 429, type: "rate_limit_error", message: "Number of requests has exceeded your rate limit"),
      .error(status: 401, type: "authentication_error", message: "invalid x-api-key"),
      .error(status: 529, type: "overloaded_error", message: "Overloaded"),
      .error(status: 400, type: "invalid_request_error", message: "prompt is too long: 210000 tokens > 200000 maximum"),
      .raw(cut),
      .raw("event: message_start\ndata: {not json\n\n"),
    ]
    let expected: [(RPCError.Code, String)] = [
      (.resourceExhausted, "rate_limited"), (.unauthenticated, "authentication"), (.unavailable, "overloaded"),
      (.invalidArgument, "context_too_long"), (.unavailable, "unavailable"), (.unavailable, "unavailable"),
    ]
    try await withOpenAIStandIn(replies) { standIn in
      try await withModelRouter(anthropic: try settings(standIn)) { client, _ in
        for (code, type) in expected {
          let error = await #expect(throws: RPCError.self) {
            _ = try await client.answer(F.request(model: "anthropic:claude-test", [F.user("hi")]))
          }
          #expect(error?.code == code, "\(String(describing: error))")
          #expect(modelErrorType(error) == type, "\(String(describing: error))")
        }
        // A request that names no model goes to Anthropic when it is the only provider.
        standIn.enqueue(.raw(textStream("Hello.")))
        let answer = try await client.answer(F.request([F.user("hi")]))
        #expect(answer.finish?.model == "anthropic:claude-test")
      }
    }
  }

  @Test("a slow first byte is waited for; a stream that stalls ends at the caller's deadline")
  func slowAndStalled() async throws {
    let replies: [OpenAIStandIn.Reply] = [
      .raw(textStream("Slow but sure.")).afterHead(.milliseconds(400)),
      .raw(textStream("Never arrives.")).delayed(.seconds(60)),
    ]
    try await withOpenAIStandIn(replies) { standIn in
      try await withModelRouter(anthropic: try settings(standIn)) { client, _ in
        let slow = try await client.answer(
          F.request(model: "anthropic:claude-test", [F.user("hi")]), timeout: .seconds(30))
        #expect(slow.text == "Slow but sure.")
        // The deadline is long enough for the request to reach the stand-in on a loaded machine
        // (a shorter one can expire before it is sent, leaving nothing upstream to abandon).
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(
            F.request(model: "anthropic:claude-test", [F.user("hi")]), timeout: .seconds(3))
        }
        #expect(standIn.requests.count == 2, "the stalled request reached the stand-in")
        #expect(error?.code == .deadlineExceeded || error?.code == .cancelled, "\(String(describing: error))")
      }
      // The stalled response was abandoned by ModelRouter, not left open.
      var closed = false
      for _ in 0..<250 where !closed {
        closed = standIn.abandoned == 1 && standIn.inFlight == 0
        if !closed { try await Task.sleep(for: .milliseconds(20)) }
      }
      #expect(closed, "abandoned \(standIn.abandoned), in flight \(standIn.inFlight)")
    }
  }
}
