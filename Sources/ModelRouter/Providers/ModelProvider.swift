import InspectProtos

/// One source of model answers (a real API, a recorded transcript). A provider streams its
/// answer into a ``GenerateSink`` and throws ``ModelError`` when it cannot; routing has already
/// decided that this provider serves the model.
protocol ModelProvider: Sendable {
  /// The provider's name, the prefix of its model ids (`openai`, `scripted`).
  var name: String { get }

  /// The models this provider offers now (for `ListModels`).
  func models() -> [Inspect_Model_V1_ModelInfo]

  /// Streams the answer to `request` from `model` (the provider's own name for it, without the
  /// `<provider>:` prefix): text deltas and tool calls, then usage, then finish (last).
  func generate(_ request: Inspect_Model_V1_GenerateRequest, model: String, into sink: GenerateSink) async throws
}

extension ModelProvider {
  /// The id callers use for `model` of this provider.
  func id(of model: String) -> String { "\(name):\(model)" }
}

/// Where a provider writes its answer, in order. `write` suspends while the caller reads slowly,
/// so a provider never buffers more than the message in hand (the gRPC writer is the buffer).
struct GenerateSink: Sendable {
  let write: @Sendable (Inspect_Model_V1_GenerateResponse) async throws -> Void

  func text(_ text: String) async throws {
    try await write(.with { $0.textDelta = .with { $0.text = text } })
  }

  func toolCallStart(index: Int, id: String, name: String) async throws {
    try await write(
      .with {
        $0.toolCallStart = .with {
          $0.index = UInt32(index)
          $0.id = id
          $0.name = name
        }
      })
  }

  func toolCallArguments(index: Int, fragment: String) async throws {
    try await write(
      .with {
        $0.toolCallArgumentsDelta = .with {
          $0.index = UInt32(index)
          $0.fragment = fragment
        }
      })
  }

  func toolCallEnd(index: Int) async throws {
    try await write(.with { $0.toolCallEnd = .with { $0.index = UInt32(index) } })
  }

  func usage(input: Int, output: Int, cachedInput: Int = 0) async throws {
    try await write(
      .with {
        $0.usage = .with {
          $0.inputTokens = UInt32(clamping: input)
          $0.outputTokens = UInt32(clamping: output)
          $0.cachedInputTokens = UInt32(clamping: cachedInput)
        }
      })
  }

  func finish(_ reason: Inspect_Model_V1_FinishReason, model: String, provider: String) async throws {
    try await write(
      .with {
        $0.finish = .with {
          $0.reason = reason
          $0.model = model
          $0.provider = provider
        }
      })
  }
}
