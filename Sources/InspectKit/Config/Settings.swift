import Foundation

/// A setting from the environment that cannot be used: the service stops at start with it.
public struct SettingsError: Error, CustomStringConvertible {
  public var message: String
  public var description: String { message }

  public init(message: String) { self.message = message }
}

extension Dictionary where Key == String, Value == String {
  /// The whole number in variable `name`, nil when unset or empty; throws when it is set but not
  /// a whole number in `range`.
  public func wholeNumber(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
    guard let text = self[name]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
    guard let value = Int(text), range.contains(value) else {
      throw SettingsError(message: "\(name)='\(text)' is not a whole number in \(range)")
    }
    return value
  }

  /// A secret from variable `name`, else the trimmed contents of the file named by `<name>_FILE`
  /// (so that it need not sit in the environment); nil when neither is set. Throws when the file
  /// cannot be read or is empty.
  public func valueOrFile(_ name: String) throws -> String? {
    if let value = self[name], !value.isEmpty { return value }
    guard let path = self[name + "_FILE"], !path.isEmpty else { return nil }
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw ConfigurationError("\(name)_FILE=\(path) cannot be read")
    }
    let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !value.isEmpty else { throw ConfigurationError("\(name)_FILE=\(path) is empty") }
    return value
  }
}
