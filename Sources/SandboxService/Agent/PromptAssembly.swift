import Foundation
import InspectProtos

/// What the model is told, in a fixed order:
///
/// 1. **System**: Inspect's instructions, then how the request reached us (a per-client note:
///    a Slack thread reads differently from a web prompt), then the **repository context** —
///    `AGENTS.md`, the repository's skills (`.inspect/skills/*.md`), a README excerpt, a
///    summary of the file tree, and facts about the image — all in one system message (some
///    providers take only one).
/// 2. The **compacted history**: the latest compaction summary, if the session was compacted.
/// 3. The **history** after it: earlier prompts, answers, tool calls and results, turn ends.
/// 4. The **new prompt(s)** with their authors and attachments (images as images; text
///    captures — DOM subtrees, component props — as quoted text).
/// 5. The **tool schemas**, sent beside the messages (`GenerateRequest.tools`).
///
/// The repository context is read from the sandbox when the turn starts, before the agent can
/// change anything, from the image's files (the sync to the session branch may still be
/// running). Every part has a size limit so the context stays a small share of the window.
struct RepositoryContext: Sendable, Equatable {
  var agentInstructions: String?
  var skills: [(name: String, text: String)] = []
  var readme: String?
  var fileTree: String?
  var imageFacts: String?

  static let agentsFileLimit = 16 * 1024
  static let skillLimit = 8 * 1024
  static let skillsTotalLimit = 32 * 1024
  static let readmeLimit = 4 * 1024
  static let treeEntryLimit = 200

  static func == (left: RepositoryContext, right: RepositoryContext) -> Bool {
    left.agentInstructions == right.agentInstructions && left.skills.map(\.name) == right.skills.map(\.name)
      && left.skills.map(\.text) == right.skills.map(\.text) && left.readme == right.readme
      && left.fileTree == right.fileTree && left.imageFacts == right.imageFacts
  }

  /// Reads the context from `sandbox` (missing files are left out).
  static func read(from sandbox: any SandboxInstance) -> RepositoryContext {
    func text(_ path: String, limit: Int) -> String? {
      guard let file = try? sandbox.readFile(path, offset: 0, limit: UInt64(limit)) else { return nil }
      let text = String(decoding: file.content, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      guard !text.isEmpty else { return nil }
      return file.truncated ? text + "\n… (cut at \(limit) bytes; read the file for the rest)" : text
    }
    var context = RepositoryContext()
    context.agentInstructions = text("AGENTS.md", limit: agentsFileLimit)
    if let listing = try? sandbox.listFiles(".inspect/skills", recursive: false, maxEntries: 100) {
      var total = 0
      for entry in listing.entries.sorted(by: { $0.path < $1.path })
      where entry.kind == .file && entry.path.hasSuffix(".md") && total < skillsTotalLimit {
        guard let skill = text(entry.path, limit: min(skillLimit, skillsTotalLimit - total)) else { continue }
        total += skill.utf8.count
        let name = String(entry.path.split(separator: "/").last ?? "").replacingOccurrences(of: ".md", with: "")
        context.skills.append((name, skill))
      }
    }
    for name in ["README.md", "README", "README.rst", "README.txt"] {
      if let readme = text(name, limit: readmeLimit) {
        context.readme = readme
        break
      }
    }
    if let listing = try? sandbox.listFiles("", recursive: true, maxEntries: 20_000) {
      context.fileTree = summarize(
        listing.entries.filter { $0.kind == .file }.map(\.path), truncated: listing.truncated)
    }
    let image = sandbox.image
    context.imageFacts =
      "The sandbox was made from image \(image.id): \(image.repository) at commit \(image.commit.prefix(12))"
      + (image.branch.isEmpty ? "" : " of \(image.branch)")
      + ", built \(ISO8601DateFormatter().string(from: image.builtAt))"
      + (image.setupRan ? "; .inspect/setup.sh ran when it was built" : "")
      + ". The session's branch is synced into it when the turn starts. It has no network."
    return context
  }

  /// Top-level entries with their file counts, and the files of small directories, at most
  /// ``treeEntryLimit`` lines.
  static func summarize(_ files: [String], truncated: Bool) -> String {
    var counts: [String: Int] = [:]
    var topFiles: [String] = []
    for path in files {
      let parts = path.split(separator: "/", maxSplits: 1)
      if parts.count == 1 { topFiles.append(path) } else { counts[String(parts[0]), default: 0] += 1 }
    }
    var lines = ["\(files.count) files\(truncated ? " (listing cut)" : "")"]
    for directory in counts.keys.sorted() {
      lines.append("\(directory)/ (\(counts[directory]!) files)")
    }
    lines += topFiles.sorted()
    if lines.count > treeEntryLimit {
      lines = Array(lines.prefix(treeEntryLimit)) + ["… \(lines.count - treeEntryLimit) more entries"]
    }
    return lines.joined(separator: "\n")
  }

  /// The context as the system message's second part.
  var text: String {
    var parts: [String] = []
    if let agentInstructions {
      parts.append("## The repository's instructions (AGENTS.md)\n\n\(agentInstructions)")
    }
    for skill in skills {
      parts.append("## Skill: \(skill.name) (.inspect/skills/\(skill.name).md)\n\n\(skill.text)")
    }
    if let readme { parts.append("## README (excerpt)\n\n\(readme)") }
    if let fileTree { parts.append("## Files\n\n\(fileTree)") }
    if let imageFacts { parts.append("## Sandbox\n\n\(imageFacts)") }
    return parts.joined(separator: "\n\n")
  }
}

/// How a request from each client reads (the system message's middle part).
enum ClientAdapter {
  static func note(for client: String) -> String {
    switch client.lowercased() {
    case "slack":
      return "The request comes from a Slack thread: the prompt quotes the thread's messages with their authors. "
        + "Answer briefly; your final message is posted back to the thread."
    case "github":
      return "The request comes from a comment on a GitHub pull request: push your changes to the same branch, so "
        + "they land on that pull request."
    case "chrome":
      return "The request comes from the browser extension: it may carry the DOM subtree and component props of the "
        + "element the person picked, as attachments; use them to find the code that renders it."
    case "voice":
      return "The request was spoken and transcribed: read past transcription slips."
    case "cli":
      return "The request comes from the command line."
    default:
      return "The request comes from the web app."
    }
  }
}

extension AgentLoop {
  /// The first messages of a turn, in the order above (tool schemas go beside them).
  static func messages(
    for turn: Inspect_Sandbox_V1_StartTurn, context: RepositoryContext = RepositoryContext()
  ) -> [Inspect_Model_V1_Message] {
    var system = systemPrompt + "\n\n" + ClientAdapter.note(for: turn.client)
    let repository = context.text
    if !repository.isEmpty { system += "\n\n# Repository context\n\n" + repository }
    var messages: [Inspect_Model_V1_Message] = [
      .with {
        $0.role = .system
        $0.text = system
      }
    ]
    if !turn.history.compactionSummary.isEmpty {
      messages.append(
        .with {
          $0.role = .user
          $0.text =
            "[Summary of the earlier conversation, written when it was compacted]\n\n\(turn.history.compactionSummary)"
        })
    }
    messages += history(turn.history)
    messages.append(prompt(turn.prompts))
    return messages
  }

  static func said(_ prompt: Inspect_Sandbox_V1_TurnPrompt) -> String {
    "\(prompt.author.displayName.isEmpty ? "Someone" : prompt.author.displayName): \(prompt.text)"
  }

  /// The new prompts as one user message: each with its author, an element picked with the
  /// Chrome extension rendered compactly (``ElementCaptureText``), other text attachments quoted
  /// after it, image attachments as images; attachments of earlier turns only named.
  static func prompt(_ prompts: [Inspect_Sandbox_V1_TurnPrompt]) -> Inspect_Model_V1_Message {
    var texts: [String] = []
    var images: [Inspect_Model_V1_Image] = []
    for prompt in prompts {
      var text = said(prompt)
      for attachment in prompt.attachments {
        if attachment.data.isEmpty {
          // An earlier turn's attachment: that turn saw its content.
          text += "\n[attached earlier: \(attachment.name) (\(attachment.mediaType))]"
        } else if attachment.mediaType == ElementCaptureText.mediaType {
          text += "\n\n" + ElementCaptureText.render(attachment.data, name: attachment.name)
        } else if attachment.mediaType.hasPrefix("image/") {
          images.append(
            .with {
              $0.mediaType = attachment.mediaType
              $0.data = attachment.data
            })
          text += "\n[attached image: \(attachment.name)]"
        } else {
          let body = String(decoding: attachment.data.prefix(32 * 1024), as: UTF8.self)
          text += "\n\n[attachment \(attachment.name) (\(attachment.mediaType))]\n\(body)"
        }
      }
      texts.append(text)
    }
    return .with {
      $0.role = .user
      $0.text = texts.joined(separator: "\n\n")
      $0.images = images
    }
  }

  /// The conversation of earlier turns (after the latest compaction).
  static func history(_ history: Inspect_Sandbox_V1_History) -> [Inspect_Model_V1_Message] {
    var messages: [Inspect_Model_V1_Message] = []
    for item in history.items {
      switch item.kind {
      case .prompt(let earlier):
        messages.append(prompt([earlier]))
      case .assistantMessage(let message):
        messages.append(
          .with {
            $0.role = .assistant
            $0.text = message.text
            $0.toolCalls = message.toolCalls.map { call in
              .with {
                $0.id = call.toolCallID
                $0.name = call.name
                $0.argumentsJson = call.argumentsJson
              }
            }
          })
      case .toolResult(let result):
        let converted = Inspect_Model_V1_ToolResult.with {
          $0.toolCallID = result.toolCallID
          $0.content = result.content
          $0.isError = result.isError
        }
        // Consecutive results answer one assistant message: keep them in one tool message.
        if messages.last?.role == .tool {
          messages[messages.count - 1].toolResults.append(converted)
        } else {
          messages.append(
            .with {
              $0.role = .tool
              $0.toolResults = [converted]
            })
        }
      case .turnEnd(let end):
        if end.outcome != "SUCCEEDED" {
          messages.append(
            .with {
              $0.role = .user
              $0.text = "[That turn ended \(end.outcome.lowercased()): \(end.reason)]"
            })
        }
      case .none:
        break
      }
    }
    return messages
  }
}
