import Foundation
import InspectKit

/// SessionService's limits. `build` reads them from the environment; tests set them directly.
///
/// | variable | meaning (default) |
/// |---|---|
/// | `INSPECT_SESSION_IDLE_SECONDS` | a live session with no subscriber, turn or call for this long is evicted from memory; it is loaded again from its file on next use (300) |
/// | `INSPECT_SESSION_MAX_CHILD_DEPTH` | how deep child sessions may nest: a top-level session has depth 0 (3) |
/// | `INSPECT_SESSION_MAX_CHILDREN` | how many child sessions one session may have (10) |
/// | `INSPECT_SESSION_STOP_GRACE_MS` | how long a stopped turn may take to end in SandboxService before SessionService breaks its stream and records it cancelled (1500) |
/// | `INSPECT_SESSION_SUBSCRIBER_BUFFER` | events a subscriber may fall behind before it is told to resync (10000) |
struct SessionSettings: Sendable {
  var idleEviction: Duration = .seconds(300)
  var maxChildDepth = 3
  var maxChildren = 10
  var stopGrace: Duration = .milliseconds(1500)
  var subscriberBuffer = 10_000
  /// The longest prompt text accepted, in UTF-8 bytes.
  var maxPromptBytes = 64 * 1024
  /// Live events reach subscribers at most this often, batched (no delay when the last delivery
  /// is older than this).
  var deliveryInterval: Duration = .milliseconds(2)

  init() {}

  /// Reads the variables in the table above; throws when one is set but not a number in range.
  init(environment: [String: String]) throws {
    func number(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
      try environment.wholeNumber(name, in: range)
    }
    if let seconds = try number("INSPECT_SESSION_IDLE_SECONDS", in: 1...86_400) { idleEviction = .seconds(seconds) }
    if let depth = try number("INSPECT_SESSION_MAX_CHILD_DEPTH", in: 0...100) { maxChildDepth = depth }
    if let count = try number("INSPECT_SESSION_MAX_CHILDREN", in: 0...100_000) { maxChildren = count }
    if let grace = try number("INSPECT_SESSION_STOP_GRACE_MS", in: 0...60_000) { stopGrace = .milliseconds(grace) }
    if let buffer = try number("INSPECT_SESSION_SUBSCRIBER_BUFFER", in: 1...10_000_000) { subscriberBuffer = buffer }
  }
}
