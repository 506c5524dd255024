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
}
