import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import ModelRouter

private typealias F = ModelRouterFixtures

/// A three-turn transcript like the demo's: look, then (once the test failure arrives) fix, then
/// (once the tests pass) report.
private let fixTranscript = """
  {"text": "The test fails; let me look.", "tool_calls": [{"name": "read_file", "arguments": {"path": "calc.py"}}]}

  {"expect": "def add", "note": "the file's content must come back", "text": "Found it.", "tool_calls": [{"name": "edit_file", "arguments": {"path": "calc.py", "old": "a - b", "new": "a + b"}}, {"name": "run_command", "arguments": {"command": "python3 -m unittest"}}]}
  {"expect": "OK", "text": "Fixed: add now adds."}
  """

@Suite("ModelRouter: the scripted provider and routing")
struct ModelRouterTests {
  // MARK: - Scripted replay

  @Test(
    "a scripted turn streams its text in several deltas and its tool call's arguments in fragments that reassemble to the JSON"
  )
  func scriptedFirstTurn() async throws {
    try await withModelRouter(transcripts: ["fix": fixTranscript]) { client, _ in
      let answer = try await client.answer(F.request(model: "scripted:fix", [F.user("Fix the failing test")]))
      #expect(answer.problems.isEmpty, "\(answer.problems)")
      #expect(answer.textDeltas.count > 1)
      #expect(answer.text == "The test fails; let me look.")
      let call = try #require(answer.toolCalls.first)
      #expect(answer.toolCalls.count == 1)
      #expect(call.id == "call_1")
      #expect(call.name == "read_file")
      #expect(call.fragments.count > 1)
      #expect(try call.argumentsObject() == ["path": "calc.py"] as NSDictionary)
      #expect((answer.usage?.outputTokens ?? 0) > 0)
      #expect(answer.finish?.reason == .toolCalls)
      #expect(answer.finish?.model == "scripted:fix")
      #expect(answer.finish?.provider == "scripted")
      // Usage comes right before finish, which is last.
      #expect(answer.messages.dropLast().last?.kind?.isUsage == true)
    }
  }

  @Test("turn k plays when the request holds k assistant messages, and a satisfied expect lets it through")
  func scriptedLaterTurns() async throws {
    try await withModelRouter(transcripts: ["fix": fixTranscript]) { client, _ in
      var messages = [
        F.user("Fix the failing test"),
        F.assistant("The test fails; let me look.", calls: [("call_1", "read_file", #"{"path":"calc.py"}"#)]),
        F.toolResult("call_1", "def add(a, b):\n    return a - b\n"),
      ]
      let second = try await client.answer(F.request(model: "scripted:fix", messages))
      #expect(second.problems.isEmpty, "\(second.problems)")
      #expect(second.text == "Found it.")
      #expect(second.toolCalls.map(\.id) == ["call_2", "call_3"])
      #expect(second.toolCalls.map(\.index) == [0, 1])
      #expect(try second.toolCalls[1].argumentsObject() == ["command": "python3 -m unittest"] as NSDictionary)

      messages += [
        F.assistant("Found it.", calls: [("call_2", "edit_file", "{}"), ("call_3", "run_command", "{}")]),
        F.toolResult("call_2", "edited"), F.toolResult("call_3", "Ran 3 tests in 0.001s\n\nOK"),
      ]
      let third = try await client.answer(F.request(model: "scripted:fix", messages))
      #expect(third.text == "Fixed: add now adds.")
      #expect(third.toolCalls.isEmpty)
      #expect(third.finish?.reason == .stop)
    }
  }

  @Test(
    "an expect the last tool result does not satisfy fails FAILED_PRECONDITION quoting what was expected and what arrived"
  )
  func scriptedExpectNotSatisfied() async throws {
    try await withModelRouter(transcripts: ["fix": fixTranscript]) { client, _ in
      let messages = [
        F.user("Fix the failing test"), F.assistant(calls: [("call_1", "read_file", "{}")]),
        F.toolResult("call_1", "error: no such file calc.py", isError: true),
      ]
      let error = await #expect(throws: RPCError.self) {
        _ = try await client.answer(F.request(model: "scripted:fix", messages))
      }
      #expect(error?.code == .failedPrecondition)
      #expect(error?.message.contains(#""def add""#) == true, "\(error?.message ?? "")")
      #expect(error?.message.contains(#""error: no such file calc.py""#) == true, "\(error?.message ?? "")")
      #expect(modelErrorType(error) == "invalid_request")

      let noResult = await #expect(throws: RPCError.self) {
        _ = try await client.answer(
          F.request(model: "scripted:fix", [F.user("hi"), F.assistant("hello"), F.user("go on")]))
      }
      #expect(noResult?.code == .failedPrecondition)
      #expect(noResult?.message.contains("no tool result") == true)
    }
  }

  @Test("a missing transcript is NOT_FOUND naming its path")
  func scriptedMissingTranscript() async throws {
    try await withModelRouter { client, directory in
      let error = await #expect(throws: RPCError.self) {
        _ = try await client.answer(F.request(model: "scripted:nowhere", [F.user("hi")]))
      }
      #expect(error?.code == .notFound)
      #expect(error?.message.contains(directory.appendingPathComponent("nowhere.transcript.jsonl").path) == true)
      #expect(modelErrorType(error) == "no_provider")
    }
  }

  @Test("a request past the transcript's last turn, or a malformed line, is FAILED_PRECONDITION")
  func scriptedPastTheEndAndMalformed() async throws {
    let transcripts = ["one": #"{"text": "only turn"}"#, "bad": "{\"text\": \"a\"}\n{\"txt\": \"typo\"}\n"]
    try await withModelRouter(transcripts: transcripts) { client, _ in
      let past = await #expect(throws: RPCError.self) {
        _ = try await client.answer(
          F.request(model: "scripted:one", [F.user("a"), F.assistant("only turn"), F.user("b")]))
      }
      #expect(past?.code == .failedPrecondition)
      #expect(past?.message.contains("1 turn(s)") == true, "\(past?.message ?? "")")

      let bad = await #expect(throws: RPCError.self) {
        _ = try await client.answer(F.request(model: "scripted:bad", [F.user("a")]))
      }
      #expect(bad?.code == .failedPrecondition)
      #expect(bad?.message.contains("line 2: unknown field 'txt'") == true, "\(bad?.message ?? "")")

      let traversal = await #expect(throws: RPCError.self) {
        _ = try await client.answer(F.request(model: "scripted:../one", [F.user("a")]))
      }
      #expect(traversal?.code == .invalidArgument)
    }
  }

  // MARK: - Routing

  @Test(
    "with no provider configured, a request without a model fails FAILED_PRECONDITION (no_provider) saying how to configure one"
  )
  func noProviderConfigured() async throws {
    try await withModelRouter { client, _ in
      for model in ["", "gpt-4.1-mini", "openai:gpt-4.1-mini"] {
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: model, [F.user("hi")]))
        }
        #expect(error?.code == .failedPrecondition)
        #expect(modelErrorType(error) == "no_provider")
        #expect(error?.message.contains("OPENAI_API_KEY") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("OPENAI_BASE_URL") == true)
        #expect(error?.message.contains("scripted:<name>") == true)
      }
      let unconfigured = await #expect(throws: RPCError.self) {
        _ = try await client.answer(F.request(model: "anthropic:claude-sonnet-4-5", [F.user("hi")]))
      }
      #expect(unconfigured?.code == .failedPrecondition)
      #expect(modelErrorType(unconfigured) == "no_provider")
      #expect(unconfigured?.message.contains("ANTHROPIC_API_KEY") == true)
    }
  }

  @Test("the default model (INSPECT_DEFAULT_MODEL) answers requests that name none")
  func defaultModelRoutes() async throws {
    try await withModelRouter(defaultModel: "scripted:hello", transcripts: ["hello": #"{"text": "Hello there."}"#]) {
      client, _ in
      let answer = try await client.answer(F.request([F.user("hi")]))
      #expect(answer.text == "Hello there.")
      #expect(answer.finish?.model == "scripted:hello")
    }
  }

  @Test("a request without messages, or with a tool schema that is not a JSON object, is INVALID_ARGUMENT")
  func invalidRequests() async throws {
    try await withModelRouter(transcripts: ["hello": #"{"text": "Hello."}"#]) { client, _ in
      let empty = await #expect(throws: RPCError.self) {
        _ = try await client.answer(F.request(model: "scripted:hello", []))
      }
      #expect(empty?.code == .invalidArgument)
      #expect(modelErrorType(empty) == "invalid_request")
      var tool = F.readFile
      tool.jsonSchema = "{not json"
      let schema = await #expect(throws: RPCError.self) {
        _ = try await client.answer(F.request(model: "scripted:hello", [F.user("hi")], tools: [tool]))
      }
      #expect(schema?.code == .invalidArgument)
      #expect(schema?.message.contains("read_file") == true)
    }
  }

  @Test("a transcript edited between calls plays its new text (parsed transcripts are kept only while the bytes match)")
  func editedTranscript() async throws {
    try await withModelRouter(transcripts: ["edit": #"{"text": "First version."}"#]) { client, directory in
      let before = try await client.answer(F.request(model: "scripted:edit", [F.user("hi")]))
      #expect(before.text == "First version.")
      let again = try await client.answer(F.request(model: "scripted:edit", [F.user("hi")]))
      #expect(again.text == "First version.")
      try #"{"text": "Second version."}"#.write(
        to: directory.appendingPathComponent("edit.transcript.jsonl"), atomically: true, encoding: .utf8)
      let after = try await client.answer(F.request(model: "scripted:edit", [F.user("hi")]))
      #expect(after.text == "Second version.")
      // A schema seen valid once does not make an invalid one pass.
      var good = F.readFile
      good.jsonSchema = #"{"type":"object"}"#
      _ = try await client.answer(F.request(model: "scripted:edit", [F.user("hi")], tools: [good]))
      var bad = good
      bad.jsonSchema = #"{"type":"object""#
      let refused = await #expect(throws: RPCError.self) {
        _ = try await client.answer(F.request(model: "scripted:edit", [F.user("hi")], tools: [bad]))
      }
      #expect(refused?.code == .invalidArgument)
    }
  }

  @Test("ListModels lists each transcript as scripted:<name> and the OpenAI default model, marked as the default")
  func listModels() async throws {
    let openAI = try OpenAISettings(baseURL: "http://127.0.0.1:9/v1", apiKey: nil, defaultModel: "local-model")
    try await withModelRouter(openAI: openAI, transcripts: ["demo": #"{"text": "a"}"#, "other": #"{"text": "b"}"#]) {
      client, _ in
      let models = try await client.listModels(.init()).models
      #expect(models.map(\.id) == ["scripted:demo", "scripted:other", "openai:local-model"])
      #expect(models.last?.defaultForTasks.contains(.code) == true)
      #expect(models.first?.defaultForTasks.isEmpty == true)
      #expect(models.first?.provider == "scripted")
    }
  }

  @Test("CountTokens estimates about four characters a token and says the count is not exact")
  func countTokens() async throws {
    try await withModelRouter(defaultModel: "scripted:demo") { client, _ in
      let response = try await client.countTokens(.with { $0.messages = [F.user(String(repeating: "a", count: 40))] })
      #expect(response.inputTokens == 10)
      #expect(response.exact == false)
      #expect(response.model == "scripted:demo")
      let error = await #expect(throws: RPCError.self) { _ = try await client.countTokens(.init()) }
      #expect(error?.code == .invalidArgument)
    }
  }

  // MARK: - Settings

  @Test(
    "settings come from the environment: transcripts under the data directory, OpenAI only when a key or base URL is set"
  )
  func settingsFromEnvironment() throws {
    let data = URL(fileURLWithPath: "/tmp/inspect-data", isDirectory: true)
    let bare = try ModelRouterSettings(environment: [:], dataDirectory: data)
    #expect(bare.transcriptsDirectory.path == "/tmp/inspect-data/transcripts")
    #expect(bare.openAI == nil)
    #expect(bare.defaultModel == nil)

    let keyOnly = try ModelRouterSettings(environment: ["OPENAI_API_KEY": "sk-x"], dataDirectory: data)
    #expect(keyOnly.openAI?.chatCompletionsURL == "https://api.openai.com/v1/chat/completions")
    #expect(keyOnly.openAI?.defaultModel == "gpt-4.1-mini")

    let local = try ModelRouterSettings(
      environment: [
        "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1/", "OPENAI_MODEL": "qwen2.5-coder:7b",
        "INSPECT_DEFAULT_MODEL": "scripted:demo", "INSPECT_TRANSCRIPTS_DIR": "/srv/transcripts",
      ], dataDirectory: data)
    #expect(local.openAI?.chatCompletionsURL == "http://127.0.0.1:11434/v1/chat/completions")
    #expect(local.openAI?.apiKey == nil)
    #expect(local.openAI?.defaultModel == "qwen2.5-coder:7b")
    #expect(local.defaultModel == "scripted:demo")
    #expect(local.transcriptsDirectory.path == "/srv/transcripts")

    #expect(throws: ConfigurationError.self) {
      _ = try ModelRouterSettings(environment: ["OPENAI_BASE_URL": "localhost:11434"], dataDirectory: data)
    }
  }
}

extension Inspect_Model_V1_GenerateResponse.OneOf_Kind {
  fileprivate var isUsage: Bool {
    if case .usage = self { return true }
    return false
  }
}
