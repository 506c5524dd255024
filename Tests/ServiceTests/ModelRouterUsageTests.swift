import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import ModelRouter

private typealias F = ModelRouterFixtures

@Suite("ModelRouter: Transcribe and the usage ledger")
struct ModelRouterUsageTests {
  static func settings(_ standIn: OpenAIStandIn) throws -> OpenAISettings {
    try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk-test", defaultModel: "m")
  }

  /// A few bytes that stand for a recording (the stand-in does not decode audio).
  static let audio = Data([0x1A, 0x45, 0xDF, 0xA3] + (0..<2000).map { UInt8(truncatingIfNeeded: $0 &* 7) })

  @Test("audio goes up as a multipart upload and the text, language and duration come back")
  func transcribe() async throws {
    try await withOpenAIStandIn([.transcription("Fix the login bug.", language: "english", duration: 2.5)]) {
      standIn in
      try await withModelRouter(openAI: try Self.settings(standIn)) { client, _ in
        let answer = try await client.transcribe(
          .with {
            $0.audio = Self.audio
            $0.mediaType = "audio/webm;codecs=opus"
            $0.language = "en-US"
            $0.sessionID = "ses_voice"
          })
        #expect(answer.text == "Fix the login bug.")
        #expect(answer.language == "english")
        #expect(answer.duration.seconds == 2 && answer.duration.nanos == 500_000_000)
        #expect(answer.model == "openai:whisper-1")
      }
      let sent = try #require(standIn.requests.first)
      #expect(sent.path == "/v1/audio/transcriptions")
      #expect(sent.authorization == "Bearer sk-test")
      #expect(sent.form == ["model": "whisper-1", "language": "en", "response_format": "verbose_json"])
      #expect(sent.upload?.fileName == "audio.webm")
      #expect(sent.upload?.contentType == "audio/webm")
      #expect(sent.upload?.bytes == Self.audio)
    }
  }

  @Test("the routing file's transcribe task picks the model; a plain json answer gives the text; 6 MiB of audio pass")
  func transcribeRouted() async throws {
    let routes = try routeTable("tasks:\n  transcribe: openai:local-whisper")
    let long = Data((0..<(6 << 20)).map { UInt8(truncatingIfNeeded: $0) })
    try await withOpenAIStandIn([.transcription("Hello.")]) { standIn in
      try await withModelRouter(openAI: try Self.settings(standIn), routes: routes) { client, _ in
        let answer = try await client.transcribe(
          .with {
            $0.audio = long
            $0.mediaType = "audio/wav"
          })
        #expect(answer.text == "Hello.")
        #expect(answer.model == "openai:local-whisper")
        #expect(!answer.hasDuration)
      }
      #expect(standIn.requests.first?.form["model"] == "local-whisper")
      #expect(standIn.requests.first?.form["language"] == nil)
      #expect(standIn.requests.first?.upload?.fileName == "audio.wav")
      #expect(standIn.requests.first?.upload?.bytes == long)
    }
  }

  @Test("empty audio, an unsupported type, no provider, a model that cannot transcribe and a 429 are clear errors")
  func transcribeErrors() async throws {
    @Sendable func call(
      _ client: ModelRouterClient, audio: Data = Self.audio, type: String = "audio/ogg", model: String = ""
    )
      async -> RPCError?
    {
      await #expect(throws: RPCError.self) {
        _ = try await client.transcribe(
          .with {
            $0.audio = audio
            $0.mediaType = type
            $0.model = model
          })
      }
    }
    try await withModelRouter { client, _ in
      let empty = await call(client, audio: Data())
      #expect(empty?.code == .invalidArgument)
      #expect(empty?.message.contains("no audio") == true)
      let type = await call(client, type: "text/plain")
      #expect(type?.code == .invalidArgument)
      #expect(type?.message.contains("audio/webm") == true, "the supported types are listed")
      let none = await call(client)
      #expect(none?.code == .failedPrecondition)
      #expect(modelErrorType(none) == "no_provider")
      #expect(none?.message.contains("OPENAI_BASE_URL") == true)
    }
    let limited = OpenAIStandIn.Reply.error(status: 429, type: "requests", code: "rate_limit_exceeded", message: "slow")
    let missing = OpenAIStandIn.Reply.error(status: 404, type: "invalid_request_error", message: "Not Found")
    try await withOpenAIStandIn([limited, missing]) { standIn in
      let anthropic = try AnthropicSettings(
        baseURL: standIn.baseURL.replacingOccurrences(of: "/v1", with: ""), apiKey: "k")
      try await withModelRouter(openAI: try Self.settings(standIn), anthropic: anthropic) { client, _ in
        let wrongModel = await call(client, model: "anthropic:claude-sonnet-4-5")
        #expect(wrongModel?.code == .failedPrecondition)
        #expect(wrongModel?.message.contains("cannot transcribe") == true)
        let error = await call(client)
        #expect(error?.code == .resourceExhausted)
        #expect(modelErrorType(error) == "rate_limited")
        let noEndpoint = await call(client)
        #expect(noEndpoint?.code == .failedPrecondition)
        #expect(modelErrorType(noEndpoint) == "no_provider")
        #expect(noEndpoint?.message.contains("no transcription endpoint") == true)
      }
    }
  }

  @Test("every call is recorded against its session: GetUsage sums tokens, cost, failures and audio per model")
  func usagePerSession() async throws {
    let routes = try routeTable(
      """
      models:
        - id: openai:m
          input_price_per_million: 2
          output_price_per_million: 8
      """)
    let replies: [OpenAIStandIn.Reply] = [
      .text("one", usage: (1000, 500)), .text("two", usage: (3000, 250)),
      .error(status: 400, type: "invalid_request_error", message: "no"), .text("other session", usage: (7, 7)),
      .transcription("Spoken.", language: "english", duration: 4.25),
    ]
    try await withOpenAIStandIn(replies) { standIn in
      try await withModelRouter(
        openAI: try Self.settings(standIn), routes: routes, transcripts: ["demo": #"{"text": "scripted"}"#]
      ) { client, _ in
        func request(_ session: String, model: String = "openai:m") -> Inspect_Model_V1_GenerateRequest {
          var request = F.request(model: model, [F.user("hi")])
          request.sessionID = session
          return request
        }
        _ = try await client.answer(request("ses_a"))
        _ = try await client.answer(request("ses_a"))
        await #expect(throws: RPCError.self) { _ = try await client.answer(request("ses_a")) }
        _ = try await client.answer(request("ses_b"))
        _ = try await client.answer(request("ses_a", model: "scripted:demo"))
        _ = try await client.transcribe(
          .with {
            $0.audio = Self.audio
            $0.mediaType = "audio/mpeg"
            $0.sessionID = "ses_a"
          })

        let usage = try await client.getUsage(.with { $0.sessionID = "ses_a" })
        #expect(usage.sessionID == "ses_a")
        #expect(usage.total.calls == 5)
        #expect(usage.total.failedCalls == 1)
        let scriptedInput = usage.byModel.first { $0.model == "scripted:demo" }?.inputTokens ?? 0
        #expect(usage.total.inputTokens == 4000 + scriptedInput)
        let openAI = try #require(usage.byModel.first)
        #expect(openAI.model == "openai:m", "the most expensive model comes first")
        #expect(openAI.calls == 3)
        #expect(openAI.inputTokens == 4000)
        #expect(openAI.outputTokens == 750)
        #expect(abs(openAI.costUsd - (4000 * 2 + 750 * 8) / 1_000_000) < 1e-12)
        let whisper = try #require(usage.byModel.first { $0.model == "openai:whisper-1" })
        #expect(whisper.audioSeconds == 4.25)
        #expect(usage.total.audioSeconds == 4.25)

        let other = try await client.getUsage(.with { $0.sessionID = "ses_b" })
        #expect(other.total.calls == 1)
        #expect(other.total.inputTokens == 7)
        let unknown = try await client.getUsage(.with { $0.sessionID = "ses_never" })
        #expect(unknown.total.calls == 0)
        #expect(unknown.byModel.isEmpty)
        let error = await #expect(throws: RPCError.self) { _ = try await client.getUsage(.init()) }
        #expect(error?.code == .invalidArgument)
      }
    }
  }

  @Test("the ledger survives a restart of ModelRouter over the same data directory")
  func ledgerIsDurable() async throws {
    try await TemporaryDirectory.with { directory in
      let ledger = try UsageLedger.open(in: directory)
      try await ledger.record(
        .init(
          sessionID: "ses_d", model: "openai:m", outcome: .succeeded,
          usage: .with {
            $0.inputTokens = 10
            $0.outputTokens = 2
          }, duration: .milliseconds(12)))
      try ledger.close()
      let reopened = try UsageLedger.open(in: directory)
      let usage = try await reopened.usage(session: "ses_d")
      #expect(usage.total.calls == 1)
      #expect(usage.total.inputTokens == 10)
    }
  }
}
