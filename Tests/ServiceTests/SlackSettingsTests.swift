import Foundation
import Testing

@testable import SessionService

/// SessionService's Slack settings from the environment: defaults, and values refused with the
/// variable's name.
@Suite("Slack settings: defaults, and bad values refused naming the variable")
struct SlackSettingsTests {
  @Test("the pace and the progress tick default to 1 s and 15 s and can be set in milliseconds")
  func paceAndTick() throws {
    let defaults = try SlackSettings(environment: [:])
    #expect(defaults.minInterval == .seconds(1))
    #expect(defaults.progressTick == .seconds(15))
    let set = try SlackSettings(
      environment: ["INSPECT_SLACK_MIN_INTERVAL_MS": "250", "INSPECT_SLACK_PROGRESS_TICK_MS": "2000"])
    #expect(set.minInterval == .milliseconds(250))
    #expect(set.progressTick == .seconds(2))
  }

  @Test("a tick under a second, or not a number, is refused naming the variable", arguments: ["999", "soon", "-5"])
  func badTick(value: String) {
    do {
      _ = try SlackSettings(environment: ["INSPECT_SLACK_PROGRESS_TICK_MS": value])
      Issue.record("INSPECT_SLACK_PROGRESS_TICK_MS=\(value) was accepted")
    } catch {
      #expect("\(error)".contains("INSPECT_SLACK_PROGRESS_TICK_MS"), "\(error)")
      #expect("\(error)".contains(value), "\(error)")
    }
  }

  @Test("an API URL that is not http(s), or a mention setting that is not true or false, is refused")
  func badValues() {
    #expect(throws: (any Error).self) { try SlackSettings(environment: ["INSPECT_SLACK_API_URL": "ftp://x"]) }
    #expect(throws: (any Error).self) { try SlackSettings(environment: ["INSPECT_SLACK_REQUIRE_MENTION": "maybe"]) }
  }
}
