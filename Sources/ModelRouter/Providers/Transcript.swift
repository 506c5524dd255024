import Foundation
import Synchronization

/// A scripted conversation read from a `<name>.transcript.jsonl` file: one ``Turn`` per
/// non-blank line. The format is described at the top of `ScriptedProvider.swift`.
struct Transcript: Sendable {
  /// One model turn: what the previous tool result must contain, then what the model answers.
  struct Turn: Sendable {
    /// The 1-based line of the file, for error messages.
    var line: Int
    var expect: String?
    var text: String
    var toolCalls: [ToolCall]
  }

  /// A tool call to stream; the arguments are serialized once, with sorted keys.
  struct ToolCall: Sendable {
    var name: String
    var argumentsJSON: String
  }

  static let fileSuffix = ".transcript.jsonl"
  static let keys: Set<String> = ["expect", "text", "tool_calls", "note"]

  var path: String
  var turns: [Turn]

  /// Reads and parses the transcript at `url`; a missing file is NOT_FOUND (`no_provider`), a
  /// malformed one FAILED_PRECONDITION naming the line.
  static func load(from url: URL, model: String, cache: TranscriptCache? = nil) throws -> Transcript {
    let data: Data
    do {
      data = try Data(contentsOf: url)
    } catch {
      throw ModelError.noProvider(
        "model \(model) has no transcript: \(url.path) does not exist or cannot be read; put a "
          + "\(fileSuffix) file there (the directory is INSPECT_TRANSCRIPTS_DIR, default <data-dir>/transcripts)")
    }
    if let cached = cache?.transcript(at: url.path, content: data) { return cached }
    let transcript = try parse(String(decoding: data, as: UTF8.self), path: url.path)
    cache?.store(transcript, content: data)
    return transcript
  }

  /// Parses JSON Lines text; `path` only names the file in error messages.
  static func parse(_ text: String, path: String) throws -> Transcript {
    var turns: [Turn] = []
    for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
      if line.isEmpty { continue }
      turns.append(try parseTurn(line, line: offset + 1, path: path))
    }
    return Transcript(path: path, turns: turns)
  }

  private static func parseTurn(_ text: String, line: Int, path: String) throws -> Turn {
    func malformed(_ problem: String) -> ModelError {
      .invalidRequest("transcript \(path) line \(line): \(problem)", code: .failedPrecondition)
    }
    guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
      throw malformed("is not a JSON object")
    }
    if let unknown = Set(object.keys).subtracting(keys).sorted().first {
      throw malformed("unknown field '\(unknown)' (known: expect, text, tool_calls, note)")
    }
    var turn = Turn(line: line, expect: nil, text: "", toolCalls: [])
    if let expect = object["expect"] {
      guard let expect = expect as? String else { throw malformed("'expect' must be a string") }
      turn.expect = expect
    }
    if let text = object["text"] {
      guard let text = text as? String else { throw malformed("'text' must be a string") }
      turn.text = text
    }
    if let calls = object["tool_calls"] {
      guard let calls = calls as? [[String: Any]] else {
        throw malformed("'tool_calls' must be an array of {\"name\": …, \"arguments\": {…}}")
      }
      for call in calls {
        guard let name = call["name"] as? String, !name.isEmpty else {
          throw malformed("every tool call needs a non-empty 'name'")
        }
        let arguments = call["arguments"] ?? [String: Any]()
        guard arguments is [String: Any],
          let json = try? JSONSerialization.data(
            withJSONObject: arguments, options: [.sortedKeys, .withoutEscapingSlashes])
        else { throw malformed("the arguments of tool call '\(name)' must be a JSON object") }
        turn.toolCalls.append(ToolCall(name: name, argumentsJSON: String(decoding: json, as: UTF8.self)))
      }
    }
    guard !turn.text.isEmpty || !turn.toolCalls.isEmpty else {
      throw malformed("a turn needs 'text', 'tool_calls' or both")
    }
    return turn
  }
}

/// Parsed transcripts by path, with the bytes they were parsed from: the file is still read on
/// every call (so edits apply at once), but parsed again only when its bytes changed.
final class TranscriptCache: Sendable {
  private let entries = Mutex<[String: (content: Data, transcript: Transcript)]>([:])

  func transcript(at path: String, content: Data) -> Transcript? {
    entries.withLock { entries in
      guard let entry = entries[path], entry.content == content else { return nil }
      return entry.transcript
    }
  }

  func store(_ transcript: Transcript, content: Data) {
    entries.withLock { $0[transcript.path] = (content, transcript) }
  }
}
