import Foundation
import InspectProtos

/// One repository of the catalog, with the fields of `docs/CONTRACTS.md`: its `owner/name`, a
/// description, hints (words, paths, product names that point at it), aliases (other names
/// people use), the channels where it is the usual repository, and the text of its README.
struct CatalogEntry: Sendable, Equatable {
  /// A README longer than this is cut (its start says what the repository is).
  static let readmeLimit = 64 << 10

  var name: String
  var description: String
  var hints: [String]
  var aliases: [String]
  var channels: [String]
  var readme: String

  /// Trims every field and drops empty and repeated list items; the name is not checked here.
  init(
    name: String, description: String = "", hints: [String] = [], aliases: [String] = [], channels: [String] = [],
    readme: String = ""
  ) {
    self.name = name.trimmingCharacters(in: .whitespacesAndNewlines)
    self.description = description.trimmingCharacters(in: .whitespacesAndNewlines)
    self.hints = Self.cleaned(hints)
    self.aliases = Self.cleaned(aliases)
    self.channels = Self.cleaned(channels)
    let readme = readme.trimmingCharacters(in: .whitespacesAndNewlines)
    self.readme =
      readme.utf8.count <= Self.readmeLimit
      ? readme : String(decoding: readme.utf8.prefix(Self.readmeLimit), as: UTF8.self)
  }

  init(proto: Inspect_Classifier_V1_Repo) {
    self.init(
      name: proto.name, description: proto.description_p, hints: proto.hints, aliases: proto.aliases,
      channels: proto.channels, readme: proto.readme)
  }

  var proto: Inspect_Classifier_V1_Repo {
    .with {
      $0.name = name
      $0.description_p = description
      $0.hints = hints
      $0.aliases = aliases
      $0.channels = channels
      $0.readme = readme
    }
  }

  /// The catalog looks names up without regard to case, as GitHub does.
  var key: String { Self.key(name) }

  static func key(_ name: String) -> String { name.trimmingCharacters(in: .whitespacesAndNewlines).lowercased() }

  // MARK: - Validation

  /// What is wrong with `name` as a repository name, or nil when it is a valid `owner/name`
  /// (two parts of letters, digits, `-`, `_` or `.`, neither `.` nor `..`).
  static func nameProblem(_ name: String) -> String? {
    let parts = name.split(separator: "/", omittingEmptySubsequences: false)
    let valid =
      parts.count == 2
      && parts.allSatisfy { part in
        !part.isEmpty && part != "." && part != ".."
          && part.unicodeScalars.allSatisfy { $0.isASCII && (Self.nameCharacters.contains($0)) }
      }
    guard !valid else { return nil }
    return "repository name '\(name)' is not owner/name (two parts of letters, digits, '-', '_' or '.' joined by '/', "
      + "e.g. local/demo)"
  }

  private static let nameCharacters = Set(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.".unicodeScalars)

  private static func cleaned(_ items: [String]) -> [String] {
    var seen: Set<String> = []
    return items.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
      .filter { !$0.isEmpty && seen.insert($0.lowercased()).inserted }
  }
}

// MARK: - Codable

extension CatalogEntry: Codable {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case name, description, hints, aliases, channels, readme
  }

  /// Strict on purpose: a misspelt field (`hint`) in a hand-written catalog is an error, not a
  /// silently empty list; so is a name that is not `owner/name`.
  init(from decoder: any Decoder) throws {
    let allFields = try decoder.container(keyedBy: CatalogCodingKey.self)
    let known = Set(CodingKeys.allCases.map(\.rawValue))
    if let unknown = allFields.allKeys.first(where: { !known.contains($0.stringValue) }) {
      throw DecodingError.dataCorruptedError(
        forKey: unknown, in: allFields,
        debugDescription: "unknown field '\(unknown.stringValue)' (a repository has name, description, hints, "
          + "aliases, channels and readme)")
    }
    let container = try decoder.container(keyedBy: CodingKeys.self)
    let name = try container.decode(String.self, forKey: .name)
    if let problem = Self.nameProblem(name.trimmingCharacters(in: .whitespacesAndNewlines)) {
      throw DecodingError.dataCorruptedError(forKey: .name, in: container, debugDescription: problem)
    }
    self.init(
      name: name,
      description: try container.decodeIfPresent(String.self, forKey: .description) ?? "",
      hints: try container.decodeIfPresent([String].self, forKey: .hints) ?? [],
      aliases: try container.decodeIfPresent([String].self, forKey: .aliases) ?? [],
      channels: try container.decodeIfPresent([String].self, forKey: .channels) ?? [],
      readme: try container.decodeIfPresent(String.self, forKey: .readme) ?? "")
  }
}

/// A coding key for any field name, to find fields a type does not know.
struct CatalogCodingKey: CodingKey {
  var stringValue: String
  var intValue: Int?
  init(stringValue: String) { self.stringValue = stringValue }
  init?(intValue: Int) {
    self.stringValue = "\(intValue)"
    self.intValue = intValue
  }
}
