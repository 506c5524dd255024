import Foundation
import InspectKit

/// The catalog as a JSON file: the seed a person writes (`INSPECT_CLASSIFIER_CATALOG`), and the
/// file earlier versions kept the catalog in (`<data-dir>/classifier/catalog.json`, taken into the
/// database once); also the catalog in memory.
///
/// ```json
/// {
///   "repos": [{"name": "local/demo", "description": "…", "hints": ["calculator"], "aliases": [], "channels": ["#demo"],
///              "readme": "# demo\n…"}],
///   "choices": {"demo": {"local/demo": 2}}
/// }
/// ```
/// `choices` (optional) counts the picks recorded per channel and repository.
struct CatalogDocument: Sendable, Equatable {
  var repos: [CatalogEntry] = []
  /// Picks per channel (``ChannelName/normalized(_:)``) and repository key (lowercased name).
  var choices: [String: [String: Int]] = [:]

  // MARK: - Files

  /// Reads and checks the file at `url`; every problem is a ``ConfigurationError`` naming the
  /// file and what is wrong with it, so that start-up fails with a message a person can act on.
  static func load(from url: URL) throws -> CatalogDocument {
    let path = url.path
    guard FileManager.default.fileExists(atPath: path) else {
      throw ConfigurationError("catalog file \(path) does not exist")
    }
    let data: Data
    do {
      data = try Data(contentsOf: url)
    } catch {
      throw ConfigurationError("catalog file \(path) cannot be read: \(error.localizedDescription)")
    }
    do {
      return try JSONDecoder().decode(CatalogDocument.self, from: data)
    } catch let error as DecodingError {
      throw ConfigurationError("catalog file \(path) is malformed: \(Self.describe(error, in: data))")
    }
  }

  /// Writes the document to `url` so that a reader sees the old file or the new one, never a
  /// mix (see ``AtomicFile``).
  func save(to url: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try AtomicFile.write(try encoder.encode(self) + Data("\n".utf8), to: url)
  }

  // MARK: - Messages

  /// A decoding error in words: where in the file, and what was expected there.
  static func describe(_ error: DecodingError, in data: Data) -> String {
    switch error {
    case .typeMismatch(let type, let context):
      return "\(location(context.codingPath)): expected \(kind(type))"
    case .valueNotFound(let type, let context):
      return "\(location(context.codingPath)): expected \(kind(type)), found null"
    case .keyNotFound(let key, let context):
      return "\(location(context.codingPath)): missing field '\(key.stringValue)'"
    case .dataCorrupted(let context):
      if context.codingPath.isEmpty { return "not valid JSON: \(syntaxProblem(in: data) ?? context.debugDescription)" }
      return "\(location(context.codingPath)): \(context.debugDescription)"
    @unknown default:
      return "\(error)"
    }
  }

  /// Where the JSON syntax breaks, with line and column (`JSONDecoder` does not say; on Linux
  /// `JSONSerialization` gives the byte offset).
  static func syntaxProblem(in data: Data) -> String? {
    do {
      _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
      return nil
    } catch {
      guard let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String else { return nil }
      guard let range = detail.range(of: #"character (\d+)"#, options: .regularExpression),
        let offset = Int(detail[range].dropFirst("character ".count))
      else { return detail }
      let before = data.prefix(offset)
      let line = before.count(where: { $0 == UInt8(ascii: "\n") }) + 1
      let column = offset - (before.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0) + 1
      let sentence = detail.hasSuffix(".") ? String(detail.dropLast()) : detail
      return "\(sentence) (line \(line), column \(column))"
    }
  }

  /// `repos[1].hints`, or `the top level`.
  static func location(_ path: [any CodingKey]) -> String {
    guard !path.isEmpty else { return "at the top level" }
    var text = ""
    for key in path {
      if let index = key.intValue { text += "[\(index)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
    }
    return "at \(text)"
  }

  private static func kind(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is [String].Type: "a list of strings"
    case is Int.Type: "a whole number"
    case is [CatalogEntry].Type, is [Any].Type: "a list"
    default: "an object"
    }
  }
}

// MARK: - Codable

extension CatalogDocument: Codable {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case repos, choices
  }

  init(from decoder: any Decoder) throws {
    let allFields = try decoder.container(keyedBy: CatalogCodingKey.self)
    if let unknown = allFields.allKeys.first(where: { CodingKeys(rawValue: $0.stringValue) == nil }) {
      throw DecodingError.dataCorruptedError(
        forKey: unknown, in: allFields,
        debugDescription: "unknown field '\(unknown.stringValue)' (the file has 'repos' and, optionally, 'choices')")
    }
    let container = try decoder.container(keyedBy: CodingKeys.self)
    repos = try container.decodeIfPresent([CatalogEntry].self, forKey: .repos) ?? []
    var seen: Set<String> = []
    for (index, repo) in repos.enumerated() where !seen.insert(repo.key).inserted {
      throw DecodingError.dataCorrupted(
        .init(
          codingPath: [CodingKeys.repos, CatalogCodingKey(intValue: index)!, CatalogEntry.CodingKeys.name],
          debugDescription: "'\(repo.name)' appears more than once"))
    }
    let rawChoices = try container.decodeIfPresent([String: [String: Int]].self, forKey: .choices) ?? [:]
    for (channel, picks) in rawChoices {
      for (repo, count) in picks where count < 0 {
        throw DecodingError.dataCorrupted(
          .init(
            codingPath: [
              CodingKeys.choices, CatalogCodingKey(stringValue: channel), CatalogCodingKey(stringValue: repo),
            ],
            debugDescription: "a count of picks cannot be negative (\(count))"))
      }
      let key = ChannelName.normalized(channel)
      guard !key.isEmpty else { continue }
      for (repo, count) in picks { choices[key, default: [:]][CatalogEntry.key(repo), default: 0] += count }
    }
  }
}
