import Foundation

/// A glob pattern over slash-separated paths: `*` and `?` stay within a path segment, `**/`
/// matches any number of directories, `[...]` a character class.
public struct GlobPattern: Sendable {
  /// A pattern that cannot be used.
  public struct Invalid: Error, CustomStringConvertible {
    public let description: String
  }

  private let expression: NSRegularExpression

  /// - Parameter acrossLines: whether `**` also matches line breaks (for commands).
  public init(_ pattern: String, acrossLines: Bool = false) throws {
    var regex = "^"
    var characters = Array(pattern)[...]
    while let character = characters.popFirst() {
      switch character {
      case "*":
        if characters.first == "*" {
          characters.removeFirst()
          if characters.first == "/" {
            characters.removeFirst()
            regex += "(?:.*/)?"
          } else {
            regex += ".*"
          }
        } else {
          regex += "[^/]*"
        }
      case "?": regex += "[^/]"
      case "[":
        var set = ""
        while let next = characters.popFirst(), next != "]" { set.append(next) }
        regex += "[" + (set.hasPrefix("!") ? "^" + set.dropFirst() : set) + "]"
      default: regex += NSRegularExpression.escapedPattern(for: String(character))
      }
    }
    regex += "$"
    do {
      expression = try NSRegularExpression(pattern: regex, options: acrossLines ? [.dotMatchesLineSeparators] : [])
    } catch {
      throw Invalid(description: "'\(pattern)' is not a valid glob pattern")
    }
  }

  public func matches(_ path: String) -> Bool {
    expression.firstMatch(in: path, range: NSRange(path.startIndex..., in: path)) != nil
  }
}
