import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Synchronization
import Testing

@testable import ModelRouter

private typealias F = ModelRouterFixtures

/// Waits (up to `seconds`) until `condition` holds; false if it never did.
private func eventually(seconds: Double = 10, _ condition: () -> Bool) async -> Bool {
  let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
  while ContinuousClock.now < deadline {
    if condition() { return true }
    try? await Task.sleep(for: .milliseconds(20))
  }
  return condition()
}

extension ModelRouterClient {
  /// Calls Generate with a deadline.
  func answer(_ request: Inspect_Model_V1_GenerateRequest, timeout: Duration) async throws -> ModelRouterAnswer {
    var options = CallOptions.defaults
    options.timeout = timeout
    return try await generate(request, options: options) { response in
      var messages: [Inspect_Model_V1_GenerateResponse] = []
      for try await message in response.messages { messages.append(message) }
      return ModelRouterAnswer(messages)
    }
  }
}

@Suite("ModelRouter: deadlines, cancellation, limits, the circuit breaker, servers that cannot stream tools")
struct ModelRouterReliabilityTests {
  static func settings(_ standIn: OpenAIStandIn) throws -> OpenAISettings {
    try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk-test", defaultModel: "m")
  }

  @Test("a slow first byte is waited for within the deadline; a stream that never ends is cut at the deadline")
  func deadlines() async throws {
    let replies: [OpenAIStandIn.Reply] = [.text("Late but here.").afterHead(.milliseconds(400)), .endless()]
    try await withOpenAIStandIn(replies) { standIn in
      try await withModelRouter(openAI: try Self.settings(standIn)) { client, _ in
        let late = try await client.answer(F.request(model: "openai:m", [F.user("hi")]), timeout: .seconds(30))
        #expect(late.text == "Late but here.")
        // Long enough for the request to reach the stand-in on a loaded machine: a shorter deadline
        // can expire before it is sent, leaving nothing upstream to stop.
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: "openai:m", [F.user("hi")]), timeout: .seconds(3))
        }
        #expect(standIn.requests.count == 2, "the endless request reached the stand-in")
        // The client's deadline and the server's (which cancels the call) race: either code is right.
        #expect(error?.code == .deadlineExceeded || error?.code == .cancelled, "\(String(describing: error))")
      }
      // The deadline stopped the upstream request: the stand-in's endless body could not go on.
      let closed = await eventually { standIn.abandoned == 1 && standIn.inFlight == 0 }
      #expect(closed, "abandoned \(standIn.abandoned), in flight \(standIn.inFlight)")
    }
  }

  @Test("a caller that cancels stops the upstream request at once")
  func cancellation() async throws {
    try await withOpenAIStandIn([.endless()]) { standIn in
      try await withModelRouter(openAI: try Self.settings(standIn)) { client, _ in
        let call = Task { try await client.answer(F.request(model: "openai:m", [F.user("hi")])) }
        #expect(await eventually { standIn.inFlight == 1 })
        call.cancel()
        let error = await #expect(throws: (any Error).self) { _ = try await call.value }
        #expect((error as? RPCError)?.code == .cancelled || error is CancellationError, "\(String(describing: error))")
        #expect(await eventually { standIn.abandoned == 1 && standIn.inFlight == 0 })
      }
    }
  }

  @Test("a malformed chunk is UNAVAILABLE naming what was sent")
  func malformed() async throws {
    let broken = #"data: {"choices":[{"index":0,"delta":{"content":"Hal"# + "\n\n"
    try await withOpenAIStandIn([.raw(broken)]) { standIn in
      try await withModelRouter(openAI: try Self.settings(standIn)) { client, _ in
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: "openai:m", [F.user("hi")]))
        }
        #expect(error?.code == .unavailable)
        #expect(modelErrorType(error) == "unavailable")
        #expect(error?.message.contains("not a chat completion chunk") == true, "\(error?.message ?? "")")
      }
    }
  }

  @Test("max_concurrent holds calls to a provider to that many at once; without it they overlap")
  func concurrencyLimit() async throws {
    let slow = OpenAIStandIn.Reply.text("one two three four five six seven eight").delayed(.milliseconds(30))
    for limit in [1, nil] as [Int?] {
      let routes = try routeTable(limit.map { "providers:\n  openai: {max_concurrent: \($0)}" } ?? "{}")
      try await withOpenAIStandIn([slow, slow, slow]) { standIn in
        try await withModelRouter(openAI: try Self.settings(standIn), routes: routes) { client, _ in
          try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<3 {
              group.addTask { try await client.answer(F.request(model: "openai:m", [F.user("hi")])).text }
            }
            for try await text in group { #expect(text == "one two three four five six seven eight") }
          }
        }
        if limit == nil {
          #expect(standIn.mostInFlight > 1)
        } else {
          #expect(standIn.mostInFlight == 1)
        }
      }
    }
  }

  @Test("a call waiting for a slot leaves at its deadline without reaching the provider; the slot then serves others")
  func waitingRespectsDeadline() async throws {
    let routes = try routeTable("providers:\n  openai: {max_concurrent: 1}")
    try await withOpenAIStandIn([.endless(), .text("Your turn.")]) { standIn in
      try await withModelRouter(openAI: try Self.settings(standIn), routes: routes) { client, _ in
        let holder = Task { try await client.answer(F.request(model: "openai:m", [F.user("hold")])) }
        #expect(await eventually { standIn.inFlight == 1 })
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: "openai:m", [F.user("wait")]), timeout: .milliseconds(400))
        }
        // The client's deadline and the server's (which cancels the call) race: either code is right.
        #expect(error?.code == .deadlineExceeded || error?.code == .cancelled, "\(String(describing: error))")
        #expect(standIn.requests.count == 1)
        // The waiting call ends on the server a little after the client's deadline: by the
        // client's stream reset or the server's own grpc-timeout timer (started when the request's
        // headers arrive). Until then it still waits, as it should, and would take the slot the
        // holder frees; free it only after that has surely happened.
        try await Task.sleep(for: .milliseconds(500))
        holder.cancel()
        _ = try? await holder.value
        let next = try await client.answer(F.request(model: "openai:m", [F.user("next")]), timeout: .seconds(30))
        #expect(next.text == "Your turn.")
        #expect(standIn.requests.map { $0.messages.last?.content } == ["hold", "next"])
      }
    }
  }

  @Test(
    "tokens_per_minute charges each call what its usage says: a call that used the minute's tokens makes the next wait")
  func tokenRate() async throws {
    let routes = try routeTable("providers:\n  openai: {tokens_per_minute: 600}")
    let request = {
      var request = F.request(model: "openai:m", [F.user("hi")])
      request.limits.maxOutputTokens = 200
      return request
    }()
    // Small usage: the estimate (about 201 tokens) is refunded down to 17, so calls go on at once.
    try await withOpenAIStandIn([], whenExhausted: .text("ok", usage: (12, 5))) { standIn in
      try await withModelRouter(openAI: try Self.settings(standIn), routes: routes) { client, _ in
        for _ in 0..<4 {
          _ = try await client.answer(request, timeout: .seconds(10))
        }
      }
      #expect(standIn.requests.count == 4)
    }
    // A call that used 600 tokens empties the bucket; the next needs ~20 s of refill and its
    // deadline passes first, without a request to the provider.
    try await withOpenAIStandIn([], whenExhausted: .text("big", usage: (400, 200))) { standIn in
      try await withModelRouter(openAI: try Self.settings(standIn), routes: routes) { client, _ in
        _ = try await client.answer(request, timeout: .seconds(10))
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(request, timeout: .milliseconds(500))
        }
        // The client's deadline and the server's (which cancels the call) race: either code is right.
        #expect(error?.code == .deadlineExceeded || error?.code == .cancelled, "\(String(describing: error))")
      }
      #expect(standIn.requests.count == 1)
    }
  }

  @Test("after repeated outages the circuit opens: calls fall back or fail at once without reaching the provider")
  func circuitBreaker() async throws {
    // The cooldown outlasts the test, so the circuit stays open however slow the machine is; the
    // half-open trial is tested on the gate with a clock the test moves (`circuitTrial`).
    let routes = try routeTable(
      """
      providers:
        openai: {breaker_failures: 2, breaker_cooldown_seconds: 600}
      fallbacks:
        openai:m: [scripted:backup]
      """)
    let down = OpenAIStandIn.Reply.error(status: 500, type: "server_error", message: "down")
    try await withOpenAIStandIn([down, down], whenExhausted: .text("should not be asked")) { standIn in
      try await withModelRouter(
        openAI: try Self.settings(standIn), routes: routes, transcripts: ["backup": #"{"text": "from the backup"}"#]
      ) { client, _ in
        for _ in 0..<2 {
          let answer = try await client.answer(F.request(model: "openai:m", [F.user("hi")]))
          #expect(answer.text == "from the backup")
        }
        #expect(standIn.requests.count == 2)
        let fellBack = try await client.answer(F.request(model: "openai:m", [F.user("hi")]))
        #expect(fellBack.text == "from the backup")
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.answer(F.request(model: "openai:other", [F.user("hi")]))
        }
        #expect(error?.code == .unavailable)
        #expect(modelErrorType(error) == "unavailable")
        #expect(error?.message.contains("circuit for provider openai is open") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("HTTP 500: down") == true, "the last outage is named")
      }
      #expect(standIn.requests.count == 2)
    }
  }

  @Test("after the cooldown one trial call goes through: an answer closes the circuit, an outage opens it again")
  func circuitTrial() async throws {
    let clock = MovableClock()
    let gate = ProviderGate(
      provider: "openai", limits: .init(breakerFailures: 2, breakerCooldown: .seconds(30)),
      logger: Logger(label: "test"), now: { clock.now })
    let outage = ModelError.unavailable("HTTP 503")
    for _ in 0..<2 {
      let permit = try await gate.admit(tokens: 0)
      await gate.release(permit, .failed(outage), usedTokens: nil)
    }
    await #expect(throws: ModelError.self) { _ = try await gate.admit(tokens: 0) }
    clock.advance(.seconds(31))
    let trial = try await gate.admit(tokens: 0)
    await #expect(throws: ModelError.self, "only the trial goes through while half-open") {
      _ = try await gate.admit(tokens: 0)
    }
    await gate.release(trial, .failed(outage), usedTokens: nil)
    await #expect(throws: ModelError.self, "a failed trial opens the circuit again") {
      _ = try await gate.admit(tokens: 0)
    }
    clock.advance(.seconds(31))
    // A rate limit is the provider answering, not an outage: the trial closes the circuit.
    let second = try await gate.admit(tokens: 0)
    await gate.release(second, .failed(ModelError.rateLimited("429")), usedTokens: nil)
    for _ in 0..<3 {
      let permit = try await gate.admit(tokens: 0)
      await gate.release(permit, .succeeded, usedTokens: nil)
    }
    // Closed: one outage is not enough to open it again (it takes breakerFailures in a row).
    let one = try await gate.admit(tokens: 0)
    await gate.release(one, .failed(outage), usedTokens: nil)
    let still = try await gate.admit(tokens: 0)
    await gate.release(still, .succeeded, usedTokens: nil)
  }

  @Test("calls waiting for tokens start as the bucket refills, oldest first, however many arrive meanwhile")
  func tokenRefillWakesWaiters() async throws {
    let routes = try routeTable("providers:\n  openai: {tokens_per_minute: 6000}")
    let request = {
      var request = F.request(model: "openai:m", [F.user("hi")])
      request.limits.maxOutputTokens = 50
      return request
    }()
    // The first call uses 5,990 tokens: the bucket (100 a second) is nearly empty, so each later
    // call (about 51 tokens) waits about half a second for its share.
    try await withOpenAIStandIn([.text("big", usage: (5000, 990))], whenExhausted: .text("small", usage: (1, 1))) {
      standIn in
      try await withModelRouter(openAI: try Self.settings(standIn), routes: routes) { client, _ in
        _ = try await client.answer(request, timeout: .seconds(30))
        try await withThrowingTaskGroup(of: String.self) { group in
          for _ in 0..<3 {
            group.addTask { try await client.answer(request, timeout: .seconds(30)).text }
            try await Task.sleep(for: .milliseconds(100))
          }
          for try await text in group { #expect(text == "small") }
        }
      }
      #expect(standIn.requests.count == 4)
    }
  }

  @Test("calls waiting for a slot fail at once when the circuit opens, so their routes fall back")
  func waitersFailWhenTheCircuitOpens() async throws {
    let gate = ProviderGate(
      provider: "openai", limits: .init(maxConcurrent: 1, breakerFailures: 1), logger: Logger(label: "test"))
    let holder = try await gate.admit(tokens: 0)
    let waiter = Task { try await gate.admit(tokens: 0) }
    while await gate.waiting == 0 { try await Task.sleep(for: .milliseconds(5)) }
    await gate.release(holder, .failed(ModelError.unavailable("HTTP 502")), usedTokens: nil)
    let error = await #expect(throws: ModelError.self) { _ = try await waiter.value }
    #expect(error?.circuitOpen == true)
    #expect(await gate.waiting == 0)
  }

  /// The caller's cancellation reaches the queue through a task of its own, so a slot can come
  /// free first; the waiting call must then hand it on, not start. Raced many times: without the
  /// hand-on, the release usually wins and the cancelled call is admitted.
  @Test("a call cancelled while waiting never starts, even when a slot comes free at the same moment")
  func cancelledWaiterHandsTheSlotOn() async throws {
    let gate = ProviderGate(provider: "openai", limits: .init(maxConcurrent: 1), logger: Logger(label: "test"))
    for _ in 0..<200 {
      let holder = try await gate.admit(tokens: 0)
      let waiter = Task { try await gate.admit(tokens: 0) }
      while await gate.waiting == 0 { await Task.yield() }
      waiter.cancel()
      await gate.release(holder, .succeeded, usedTokens: nil)
      switch await waiter.result {
      case .success(let permit):
        Issue.record("a call cancelled while waiting was admitted")
        await gate.release(permit, .abandoned, usedTokens: nil)
      case .failure(let error):
        #expect(error is CancellationError, "\(error)")
      }
      #expect(await gate.waiting == 0)
      // The slot is free again: the next call starts at once.
      let next = try await gate.admit(tokens: 0)
      await gate.release(next, .succeeded, usedTokens: nil)
    }
  }

  @Test("a model marked stream_tool_calls: false is asked without streaming when tools are offered; same events")
  func nonStreamingToolCalls() async throws {
    let routes = try routeTable(
      """
      models:
        - id: openai:local
          stream_tool_calls: false
      """)
    let call = OpenAIStandIn.ToolCall(id: "call_1", name: "read_file", arguments: #"{"path":"README.md"}"#)
    let second = OpenAIStandIn.ToolCall(id: "call_2", name: "read_file", arguments: #"{"path":"a.py"}"#)
    let replies: [OpenAIStandIn.Reply] = [
      .toolCalls([call, second], text: "Reading.", usage: (30, 9)), .text("Plain."),
      .toolCalls([call]).ignoringStream(),
    ]
    try await withOpenAIStandIn(replies) { standIn in
      try await withModelRouter(openAI: try Self.settings(standIn), routes: routes) { client, _ in
        let tooled = try await client.answer(F.request(model: "openai:local", [F.user("hi")], tools: [F.readFile]))
        #expect(tooled.problems.isEmpty, "\(tooled.problems)")
        #expect(tooled.text == "Reading.")
        #expect(tooled.toolCalls.map(\.name) == ["read_file", "read_file"])
        #expect(tooled.toolCalls.map(\.id) == ["call_1", "call_2"])
        #expect(try tooled.toolCalls[1].argumentsObject()["path"] as? String == "a.py")
        #expect(tooled.usage?.inputTokens == 30)
        #expect(tooled.finish?.reason == .toolCalls)
        let plain = try await client.answer(F.request(model: "openai:local", [F.user("hi")]))
        #expect(plain.text == "Plain.")
        // A server that answers a streamed request with one JSON completion is understood too.
        let ignoring = try await client.answer(F.request(model: "openai:m", [F.user("hi")], tools: [F.readFile]))
        #expect(ignoring.problems.isEmpty, "\(ignoring.problems)")
        #expect(try ignoring.toolCalls.first?.argumentsObject()["path"] as? String == "README.md")
      }
      #expect(standIn.requests.map(\.stream) == [false, true, true])
      #expect(standIn.requests[0].json["stream_options"] == nil)
    }
  }

  @Test("a routing file with an unknown provider or a limit that is not above zero is refused")
  func badLimits() throws {
    #expect(throws: ConfigurationError.self) { try routeTable("providers:\n  openia: {max_concurrent: 2}") }
    #expect(throws: ConfigurationError.self) { try routeTable("providers:\n  openai: {max_concurrent: 0}") }
    #expect(throws: ConfigurationError.self) { try routeTable("providers:\n  openai: {tokens_per_minute: -5}") }
  }
}

/// A clock for the gate that moves only when the test says.
private final class MovableClock: Sendable {
  private let offset = Mutex(Duration.zero)
  private let start = ContinuousClock.now

  var now: ContinuousClock.Instant { start + offset.withLock { $0 } }

  func advance(_ by: Duration) { offset.withLock { $0 += by } }
}
