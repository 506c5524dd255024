/// A repository's `owner/name`, validated: two non-empty parts of letters, digits, `-`, `_` and
/// `.` (never `.` or `..`), so it is safe in paths and refs.
public struct RepositoryName: Sendable, Hashable, CustomStringConvertible {
  public let owner: String
  public let name: String

  /// Throws ``ConfigurationError`` naming the text when it is not `owner/name`.
  public init(_ text: String) throws {
    let parts = text.split(separator: "/", omittingEmptySubsequences: false)
    let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    guard parts.count == 2,
      parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." && $0.allSatisfy(allowed.contains) })
    else { throw ConfigurationError("repository '\(text)' is not owner/name (e.g. local/demo)") }
    owner = String(parts[0])
    name = String(parts[1])
  }

  public var description: String { "\(owner)/\(name)" }
}
