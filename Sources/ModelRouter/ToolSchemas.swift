import Foundation
import InspectKit
import Synchronization

/// Tools' JSON Schemas, parsed once: an agent sends the same tools on every step of a turn, so
/// each distinct schema text is parsed the first time it is seen and remembered (at most
/// ``limit`` of them, each at most ``largest`` bytes; the memory starts over when it is full).
enum ToolSchemas {
  static let limit = 1024
  /// Larger schemas are parsed every time (the memory stays small: at most `limit` × this).
  static let largest = 64 * 1024
  private static let parsed = Mutex<[String: JSONValue]>([:])

  /// The schema as a JSON object, or nil when `text` is not one.
  static func object(_ text: String) -> JSONValue? {
    if let known = parsed.withLock({ $0[text] }) { return known }
    guard let schema = try? JSONValue.parse(text), case .object = schema else { return nil }
    guard text.utf8.count <= largest else { return schema }
    parsed.withLock { parsed in
      if parsed.count >= limit { parsed.removeAll(keepingCapacity: true) }
      parsed[text] = schema
    }
    return schema
  }
}
