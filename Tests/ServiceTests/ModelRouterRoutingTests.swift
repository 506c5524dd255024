import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import ModelRouter

private typealias F = ModelRouterFixtures

@Suite("ModelRouter: the routing file — rules, fallback chains, prices")
struct ModelRouterRoutingTests {
  static let transcripts = [
    "a": #"{"text": "from a"}"#, "b": #"{"text": "from b"}"#, "c": #"{"text": "from c"}"#,
    "d": #"{"text": "from d"}"#, "backup": #"{"text": "from the backup"}"#,
  ]

  @Test("explicit model > per-client default > per-task default > the file's default")
  func rules() async throws {
    let routes = try routeTable(
      """
      default: scripted:a
      clients:
        slack: scripted:b
      tasks:
        title: scripted:c
      """)
    try await withModelRouter(routes: routes, transcripts: Self.transcripts) { client, _ in
      func answer(
        model: String = "", client name: String = "", task: Inspect_Model_V1_Task = .code
      ) async throws
        -> String
      {
        var request = F.request(model: model, [F.user("hi")])
        request.client = name
        request.task = task
        return try await client.answer(request).text
      }
      let explicit = try await answer(model: "scripted:d", client: "slack", task: .title)
      let byClient = try await answer(client: "slack", task: .title)
      let byTask = try await answer(client: "web", task: .title)
      let byDefault = try await answer(client: "web", task: .code)
      #expect(explicit == "from d")
      #expect(byClient == "from b")
      #expect(byTask == "from c")
      #expect(byDefault == "from a")
    }
  }

  @Test("a model that keeps failing falls back to the next in its chain; not after tokens were streamed")
  func fallback() async throws {
    let routes = try routeTable(
      """
      fallbacks:
        openai:primary: [scripted:backup]
      """)
    let retry = ModelRetryPolicy(maxAttempts: 2, baseDelay: .milliseconds(5), maxDelay: .milliseconds(10))
    try await withOpenAIStandIn([], whenExhausted: .error(status: 503, type: "server_error", message: "down")) {
      standIn in
      try await withModelRouter(
        openAI: try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk"), retry: retry, routes: routes,
        transcripts: Self.transcripts
      ) { client, _ in
        let answer = try await client.answer(F.request(model: "openai:primary", [F.user("hi")]))
        #expect(answer.text == "from the backup")
        #expect(answer.finish?.model == "scripted:backup")
      }
      #expect(standIn.requests.count == 2)
    }
    let partial =
      #"data: {"choices":[{"index":0,"delta":{"content":"Half"},"finish_reason":null}]}"# + "\n\n"
      + #"data: {"error":{"message":"Overloaded","type":"overloaded_error","code":null}}"# + "\n\n"
    try await withOpenAIStandIn([.raw(partial)]) { standIn in
      try await withModelRouter(
        openAI: try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk"), retry: retry, routes: routes,
        transcripts: Self.transcripts
      ) { client, _ in
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: "openai:primary", [F.user("hi")]))
        }
        #expect(modelErrorType(error) == "overloaded")
      }
    }
  }

  @Test("usage carries the cost from the file's prices, and ListModels shows them")
  func cost() async throws {
    let routes = try routeTable(
      """
      models:
        - id: openai:priced
          context_window: 128000
          input_price_per_million: 3
          output_price_per_million: 15
          capabilities: [tools, streaming]
      """)
    try await withOpenAIStandIn([.text("Done.", usage: (prompt: 1000, completion: 500))]) { standIn in
      let openAI = try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk", defaultModel: "priced")
      try await withModelRouter(openAI: openAI, routes: routes) { client, _ in
        let answer = try await client.answer(F.request(model: "openai:priced", [F.user("hi")]))
        let cost = try #require(answer.usage?.costUsd)
        #expect(abs(cost - 0.0105) < 1e-9)
        let listed = try await client.listModels(.init()).models.first { $0.id == "openai:priced" }
        #expect(listed?.contextWindow == 128000)
        #expect(listed?.outputPricePerMillion == 15)
      }
    }
  }

  @Test("a routing file that is not YAML, names an unknown task or a bare model name is refused, naming the file")
  func badFiles() throws {
    for (yaml, words) in [
      ("models: [", "not a valid routing file"), ("tasks: {summarize: scripted:a}", "unknown task 'summarize'"),
      ("default: gpt-4.1", "'gpt-4.1' is not a model id"),
    ] {
      do {
        _ = try routeTable(yaml)
        Issue.record("\(yaml) was accepted")
      } catch let error as ConfigurationError {
        #expect("\(error)".contains(words), "\(error)")
        #expect("\(error)".contains("routes.yaml"))
      }
    }
  }
}
