import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import ModelRouter

/// ModelRouter's client type in these tests.
typealias ModelRouterClient = Inspect_Model_V1_ModelRouterService.Client<HTTP2ClientTransport.Posix>

/// Runs ModelRouter in-process (real HTTP/2) with explicit provider settings and `transcripts`
/// (name → JSONL) written to its transcripts directory, and gives `body` a client.
func withModelRouter<T: Sendable>(
  openAI: OpenAISettings? = nil,
  anthropic: AnthropicSettings? = nil,
  retry: ModelRetryPolicy = .none,
  routes: RouteTable = RouteTable(),
  defaultModel: String? = nil,
  transcripts: [String: String] = [:],
  _ body: @Sendable (ModelRouterClient, _ transcriptsDirectory: URL) async throws -> T
) async throws -> T {
  try await TemporaryDirectory.with { directory in
    let transcriptsDirectory = directory.appendingPathComponent("transcripts", isDirectory: true)
    try FileManager.default.createDirectory(at: transcriptsDirectory, withIntermediateDirectories: true)
    for (name, text) in transcripts {
      try text.write(
        to: transcriptsDirectory.appendingPathComponent("\(name).transcript.jsonl"), atomically: true, encoding: .utf8)
    }
    var settings = ModelRouterSettings(
      transcriptsDirectory: transcriptsDirectory, defaultModel: defaultModel, openAI: openAI, anthropic: anthropic)
    settings.retry = retry
    settings.routes = routes
    let built = try await ModelRouterApp.build(
      testConfiguration(.modelRouter, dataDirectory: directory), settings: settings)
    return try await withRunningService(built) { addresses in
      try await withClient(addresses.grpc) { client in
        try await body(ModelRouterClient(wrapping: client), transcriptsDirectory)
      }
    }
  }
}

extension ModelRouterClient {
  /// Calls Generate and collects the whole answer.
  func answer(_ request: Inspect_Model_V1_GenerateRequest) async throws -> ModelRouterAnswer {
    try await generate(request) { response in
      var messages: [Inspect_Model_V1_GenerateResponse] = []
      for try await message in response.messages { messages.append(message) }
      return ModelRouterAnswer(messages)
    }
  }
}

/// A Generate answer reassembled the way a client does it, keeping the pieces for assertions.
struct ModelRouterAnswer: Sendable {
  struct ToolCall: Sendable {
    var index: UInt32
    var id: String
    var name: String
    var fragments: [String] = []
    var ended = false
    var arguments: String { fragments.joined() }

    /// The arguments parsed as a JSON object.
    func argumentsObject() throws -> NSDictionary {
      try #require(try JSONSerialization.jsonObject(with: Data(arguments.utf8)) as? NSDictionary)
    }
  }

  var messages: [Inspect_Model_V1_GenerateResponse]
  var textDeltas: [String] = []
  var toolCalls: [ToolCall] = []
  var usage: Inspect_Model_V1_Usage?
  var finish: Inspect_Model_V1_Finish?
  /// Protocol violations seen while reassembling (fragments of unknown calls, messages after finish…).
  var problems: [String] = []

  var text: String { textDeltas.joined() }

  init(_ messages: [Inspect_Model_V1_GenerateResponse]) {
    self.messages = messages
    for message in messages {
      if finish != nil { problems.append("a message after finish: \(message)") }
      switch message.kind {
      case .textDelta(let delta): textDeltas.append(delta.text)
      case .toolCallStart(let start):
        toolCalls.append(ToolCall(index: start.index, id: start.id, name: start.name))
      case .toolCallArgumentsDelta(let delta):
        guard let at = toolCalls.firstIndex(where: { $0.index == delta.index && !$0.ended }) else {
          problems.append("arguments for tool call \(delta.index), which is not open")
          continue
        }
        toolCalls[at].fragments.append(delta.fragment)
      case .toolCallEnd(let end):
        guard let at = toolCalls.firstIndex(where: { $0.index == end.index && !$0.ended }) else {
          problems.append("end of tool call \(end.index), which is not open")
          continue
        }
        toolCalls[at].ended = true
      case .usage(let usage): self.usage = usage
      case .finish(let finish): self.finish = finish
      case nil: problems.append("an empty message")
      }
    }
    if finish == nil { problems.append("no finish") }
    for call in toolCalls where !call.ended { problems.append("tool call \(call.index) never ended") }
  }
}

/// Messages and requests for the tests.
enum ModelRouterFixtures {
  static func system(_ text: String) -> Inspect_Model_V1_Message {
    .with {
      $0.role = .system
      $0.text = text
    }
  }

  static func user(_ text: String) -> Inspect_Model_V1_Message {
    .with {
      $0.role = .user
      $0.text = text
    }
  }

  static func assistant(
    _ text: String = "", calls: [(id: String, name: String, arguments: String)] = []
  )
    -> Inspect_Model_V1_Message
  {
    .with {
      $0.role = .assistant
      $0.text = text
      $0.toolCalls = calls.map { call in
        .with {
          $0.id = call.id
          $0.name = call.name
          $0.argumentsJson = call.arguments
        }
      }
    }
  }

  static func toolResult(_ id: String, _ content: String, isError: Bool = false) -> Inspect_Model_V1_Message {
    .with {
      $0.role = .tool
      $0.toolResults = [
        .with {
          $0.toolCallID = id
          $0.content = content
          $0.isError = isError
        }
      ]
    }
  }

  static let readFileSchema =
    #"{"type":"object","properties":{"path":{"type":"string","minLength":1}},"required":["path"]}"#

  static let readFile: Inspect_Model_V1_Tool = .with {
    $0.name = "read_file"
    $0.description_p = "Reads a file of the repository."
    $0.jsonSchema = readFileSchema
  }

  static func request(
    model: String = "", _ messages: [Inspect_Model_V1_Message], tools: [Inspect_Model_V1_Tool] = []
  ) -> Inspect_Model_V1_GenerateRequest {
    .with {
      $0.model = model
      $0.task = .code
      $0.messages = messages
      $0.tools = tools
    }
  }
}

/// The `inspect-model-error` value of a failed call.
func modelErrorType(_ error: RPCError?) -> String? {
  error?.metadata[stringValues: ModelError.metadataKey].first { _ in true }
}

/// A routing file written to a temporary directory and loaded as ModelRouter loads it.
func routeTable(_ yaml: String) throws -> RouteTable {
  let directory = try TemporaryDirectory("inspect-routes")
  defer { directory.remove() }
  let file = directory.url.appendingPathComponent("routes.yaml")
  try yaml.write(to: file, atomically: true, encoding: .utf8)
  return try RouteTable.load(file)
}
