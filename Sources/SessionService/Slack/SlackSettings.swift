import Foundation
import InspectKit

/// Slack, from the environment:
///
/// | variable | meaning (default) |
/// |---|---|
/// | `INSPECT_SLACK_BOT_TOKEN` (or `_FILE`) | the bot token (`xoxb-…`) for Slack's Web API; without it Slack's requests are stored but not acted on |
/// | `INSPECT_SLACK_API_URL` | Slack's Web API (`https://slack.com/api`; a stand-in's URL in tests) |
/// | `INSPECT_SLACK_REQUIRE_MENTION` | `true`: later messages of a session's thread are follow-ups only when they mention the app; `false`: every message of the thread is (`true`) |
/// | `INSPECT_SLACK_MODEL` | the model of sessions started from Slack (empty: ModelRouter's route) |
/// | `INSPECT_SLACK_MIN_INTERVAL_MS` | the least time between two calls that write to one channel (1000, Slack's pace) |
/// | `INSPECT_SLACK_PROGRESS_TICK_MS` | how often the progress message's elapsed time moves while a step sends no events (15000) |
/// | `INSPECT_PUBLIC_URL` | the Gateway's public URL, for "Open in Inspect" buttons |
struct SlackSettings: Sendable {
  var botToken: String?
  var apiBaseURL = "https://slack.com/api"
  var requireMention = true
  var model = ""
  var minInterval: Duration = .seconds(1)
  var progressTick: Duration = .seconds(15)

  init() {}

  init(environment: [String: String]) throws {
    botToken = try environment.valueOrFile("INSPECT_SLACK_BOT_TOKEN")
    if let value = environment["INSPECT_SLACK_API_URL"]?.trimmingCharacters(in: .whitespaces), !value.isEmpty {
      var base = value
      while base.hasSuffix("/") { base.removeLast() }
      guard base.hasPrefix("http://") || base.hasPrefix("https://"), URL(string: base)?.host != nil else {
        throw ConfigurationError("INSPECT_SLACK_API_URL=\(value) is not an http(s) URL")
      }
      apiBaseURL = base
    }
    if let value = environment["INSPECT_SLACK_REQUIRE_MENTION"]?.lowercased(), !value.isEmpty {
      switch value {
      case "true", "1", "yes", "on": requireMention = true
      case "false", "0", "no", "off": requireMention = false
      default: throw ConfigurationError("INSPECT_SLACK_REQUIRE_MENTION=\(value) is not true or false")
      }
    }
    model = environment["INSPECT_SLACK_MODEL"]?.trimmingCharacters(in: .whitespaces) ?? ""
    if let milliseconds = try environment.wholeNumber("INSPECT_SLACK_MIN_INTERVAL_MS", in: 0...60_000) {
      minInterval = .milliseconds(milliseconds)
    }
    if let milliseconds = try environment.wholeNumber("INSPECT_SLACK_PROGRESS_TICK_MS", in: 1000...3_600_000) {
      progressTick = .milliseconds(milliseconds)
    }
  }
}
