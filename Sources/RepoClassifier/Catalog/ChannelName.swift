import Foundation

/// Channel names as the catalog compares them: `#Demo`, `demo` and ` demo ` are one channel.
/// Slack channel ids (`C0123ABC`) pass through lowercased, so they match themselves.
enum ChannelName {
  static func normalized(_ channel: String) -> String {
    var name = channel.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    while name.hasPrefix("#") { name.removeFirst() }
    return name
  }
}
