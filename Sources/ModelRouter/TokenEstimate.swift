import InspectProtos

/// A rough token count for when no tokenizer is at hand: about four characters a token (the
/// usual rule of thumb for English text and code with BPE tokenizers), a fixed 1,000 tokens per
/// image. Used by `CountTokens` (which then answers `exact = false`) and the scripted provider's
/// usage; never for limits that must hold exactly.
enum TokenEstimate {
  static let charactersPerToken = 4
  static let tokensPerImage = 1_000

  /// Tokens for `text`, rounding up (a non-empty text is at least one token).
  static func tokens(in text: String) -> Int {
    (text.count + charactersPerToken - 1) / charactersPerToken
  }

  /// Tokens for a whole prompt: messages (text, tool calls, tool results, images) and tools.
  static func tokens(messages: [Inspect_Model_V1_Message], tools: [Inspect_Model_V1_Tool]) -> Int {
    var total = 0
    for message in messages {
      total += tokens(in: message.text)
      for call in message.toolCalls { total += tokens(in: call.name) + tokens(in: call.argumentsJson) }
      for result in message.toolResults { total += tokens(in: result.content) }
      total += message.images.count * tokensPerImage
    }
    for tool in tools {
      total += tokens(in: tool.name) + tokens(in: tool.description_p) + tokens(in: tool.jsonSchema)
    }
    return total
  }
}
