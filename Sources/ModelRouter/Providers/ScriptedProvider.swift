// The scripted provider: model `scripted:<name>` replays `<name>.transcript.jsonl` from the
// transcripts directory (`INSPECT_TRANSCRIPTS_DIR`, default `<data-dir>/transcripts`), for demos
// and tests that need a model without a network.
//
// Transcript format — JSON Lines, one object per model turn; blank lines are skipped:
//
//   {"expect": "FAILED (failures=1)", "text": "The test fails; let me look.",
//    "tool_calls": [{"name": "read_file", "arguments": {"path": "calc.py"}}]}
//
// - `expect` (optional string): a substring the LAST tool result in the request's messages must
//   contain. If it does not (or there is no tool result), the call fails FAILED_PRECONDITION
//   (`inspect-model-error: invalid_request`) quoting what was expected and what arrived — so a
//   demo only succeeds when real tool results flow back to the model.
// - `text` (optional string): the answer text, streamed as several text deltas (one per word,
//   whitespace kept).
// - `tool_calls` (optional array of `{"name": string, "arguments": object}`): each streamed as
//   tool_call_start (id `call_<n>`, n counting the transcript's tool calls from 1, so ids are
//   unique within a conversation), its arguments JSON (sorted keys) in several
//   tool_call_arguments_delta fragments, then tool_call_end.
// - `note` (optional string): ignored; a comment for people reading the transcript.
// A turn needs `text`, `tool_calls` or both; unknown fields are rejected (they are likely typos).
// After the turn come usage (estimated, about four characters a token) and finish: reason
// TOOL_CALLS when the turn made tool calls, else STOP; model `scripted:<name>`.
//
// Which line plays: the request's number of assistant messages, k, selects turn k (0-based), so a
// conversation walks the file top to bottom however many prompts it spans. Errors: a missing file
// is NOT_FOUND (`no_provider`) naming the path; a request past the last turn, or a malformed line,
// is FAILED_PRECONDITION (`invalid_request`).

import Foundation
import InspectProtos

/// Replays recorded transcripts (see the format above).
struct ScriptedProvider: ModelProvider {
  let name = "scripted"
  /// Where `<name>.transcript.jsonl` files live; read on every call, so edits apply at once.
  let directory: URL
  /// Parsed transcripts, parsed again only when a file's bytes change.
  let cache = TranscriptCache()

  /// Arguments JSON is streamed in fragments of at most this many characters.
  static let fragmentLength = 8

  func models() -> [Inspect_Model_V1_ModelInfo] {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    return files.filter { $0.hasSuffix(Transcript.fileSuffix) }.sorted().compactMap { file in
      let transcript = String(file.dropLast(Transcript.fileSuffix.count))
      guard Self.isTranscriptName(transcript) else { return nil }
      return .with {
        $0.id = id(of: transcript)
        $0.provider = name
        $0.displayName = "Scripted transcript \(file)"
        $0.capabilities = [.tools, .streaming]
      }
    }
  }

  func generate(_ request: Inspect_Model_V1_GenerateRequest, model: String, into sink: GenerateSink) async throws {
    let modelID = id(of: model)
    let transcript = try Transcript.load(from: try transcriptURL(for: model), model: modelID, cache: cache)
    let turnIndex = request.messages.count { $0.role == .assistant }
    guard turnIndex < transcript.turns.count else {
      throw ModelError.invalidRequest(
        "\(modelID) has \(transcript.turns.count) turn(s) in \(transcript.path), but this request is turn "
          + "\(turnIndex + 1) (it already holds \(turnIndex) assistant message(s)); add lines to the transcript "
          + "or start a new conversation",
        code: .failedPrecondition)
    }
    let turn = transcript.turns[turnIndex]
    if let expected = turn.expect {
      try Self.check(
        expected, request: request, model: modelID, turn: turnIndex + 1, line: turn.line, path: transcript.path)
    }

    for piece in Self.words(of: turn.text) { try await sink.text(piece) }
    var callNumber = transcript.turns[..<turnIndex].reduce(0) { $0 + $1.toolCalls.count }
    for (index, call) in turn.toolCalls.enumerated() {
      callNumber += 1
      try await sink.toolCallStart(index: index, id: "call_\(callNumber)", name: call.name)
      for fragment in Self.fragments(of: call.argumentsJSON) {
        try await sink.toolCallArguments(index: index, fragment: fragment)
      }
      try await sink.toolCallEnd(index: index)
    }
    let output =
      TokenEstimate.tokens(in: turn.text)
      + turn.toolCalls.reduce(0) { total, call in
        total + TokenEstimate.tokens(in: call.name) + TokenEstimate.tokens(in: call.argumentsJSON)
      }
    try await sink.usage(input: TokenEstimate.tokens(messages: request.messages, tools: request.tools), output: output)
    try await sink.finish(turn.toolCalls.isEmpty ? .stop : .toolCalls, model: modelID, provider: name)
  }

  // MARK: - Helpers

  /// The file of transcript `model`; the name must be a plain file name (no path tricks).
  func transcriptURL(for model: String) throws -> URL {
    guard Self.isTranscriptName(model) else {
      throw ModelError.invalidRequest(
        "scripted model name '\(model)' is not valid; use letters, digits, '.', '_' or '-' "
          + "(e.g. scripted:demo for demo\(Transcript.fileSuffix))")
    }
    return directory.appendingPathComponent(model + Transcript.fileSuffix)
  }

  static func isTranscriptName(_ name: String) -> Bool {
    !name.isEmpty && !name.hasPrefix(".")
      && name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0) }
  }

  /// Fails unless the last tool result in the request contains `expected`.
  static func check(
    _ expected: String, request: Inspect_Model_V1_GenerateRequest, model: String, turn: Int, line: Int, path: String
  ) throws {
    let last = request.messages.last { !$0.toolResults.isEmpty }?.toolResults.last
    if let last, last.content.contains(expected) { return }
    let arrived =
      last.map { "the last tool result was \(ModelError.quote($0.content))" } ?? "the request holds no tool result"
    throw ModelError.invalidRequest(
      "\(model) turn \(turn) (\(path) line \(line)) expected the last tool result to contain "
        + "\(ModelError.quote(expected)), but \(arrived)",
      code: .failedPrecondition)
  }

  /// Splits text after each run of whitespace: "a b  c" → ["a ", "b  ", "c"].
  static func words(of text: String) -> [String] {
    var pieces: [String] = []
    var current = ""
    for character in text {
      if !character.isWhitespace, let last = current.last, last.isWhitespace {
        pieces.append(current)
        current = ""
      }
      current.append(character)
    }
    if !current.isEmpty { pieces.append(current) }
    return pieces
  }

  /// Splits `json` into pieces of at most ``fragmentLength`` characters, at least two when it
  /// has two characters or more (so clients always exercise reassembly).
  static func fragments(of json: String) -> [String] {
    let characters = Array(json)
    guard characters.count > 1 else { return [json] }
    let size = max(1, min(fragmentLength, characters.count / 2))
    return stride(from: 0, to: characters.count, by: size).map {
      String(characters[$0..<min($0 + size, characters.count)])
    }
  }
}
