import Foundation
import InspectKit
import InspectProtos

/// Slack's `mrkdwn` text and Block Kit blocks, within Slack's limits (a section's text at most
/// 3000 characters, a button's text 75, its value 2000; a context at most 10 elements).
enum SlackText {
  static let sectionLimit = 3000

  /// `&`, `<` and `>` escaped, as Slack requires in text that is not markup.
  static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;")
  }

  /// At most `limit` characters, cut with an ellipsis.
  static func cut(_ text: String, _ limit: Int) -> String {
    text.count <= limit ? text : String(text.prefix(limit - 1)) + "…"
  }

  static func section(_ markdown: String) -> JSONValue {
    ["type": "section", "text": ["type": "mrkdwn", "text": .string(cut(markdown, sectionLimit))]]
  }

  static func context(_ items: [String]) -> JSONValue {
    [
      "type": "context",
      "elements": .array(items.prefix(10).map { ["type": "mrkdwn", "text": .string(cut($0, sectionLimit))] }),
    ]
  }

  static func button(
    _ text: String, actionID: String, value: String? = nil, url: String? = nil, style: String? = nil
  ) -> JSONValue {
    var button: [String: JSONValue] = [
      "type": "button", "text": ["type": "plain_text", "text": .string(cut(text, 75))], "action_id": .string(actionID),
    ]
    if let value { button["value"] = .string(cut(value, 2000)) }
    if let url { button["url"] = .string(url) }
    if let style { button["style"] = .string(style) }
    return .object(button)
  }

  static func actions(_ buttons: [JSONValue]) -> JSONValue {
    ["type": "actions", "elements": .array(buttons)]
  }

  /// "Which repository?" with a button per candidate (its value the repository) and the reasons.
  static func question(_ text: String, candidates: [Inspect_Classifier_V1_Candidate]) -> [JSONValue] {
    let buttons = candidates.enumerated().map { index, candidate in
      button(candidate.repo, actionID: "\(SlackProcessor.repositoryActionPrefix)\(index)", value: candidate.repo)
    }
    let reasons = candidates.map { "*\(escape($0.repo))*: \(escape(cut($0.reason, 200)))" }
    return [section(text), actions(buttons), context(reasons)]
  }

  /// "12 s", "3 min 4 s".
  static func duration(_ seconds: Double) -> String {
    let whole = max(0, Int(seconds.rounded()))
    return whole < 60 ? "\(whole) s" : "\(whole / 60) min \(whole % 60) s"
  }

  static func phase(_ phase: Inspect_Session_V1_TurnPhase) -> String {
    switch phase {
    case .sandbox: "the sandbox"
    case .sync: "syncing the workspace"
    case .model: "the model"
    case .tool: "a tool"
    case .push: "pushing the branch"
    case .pullRequest: "the pull request"
    case .snapshot: "the snapshot"
    default: "an unknown phase"
    }
  }
}
