import Foundation
import InspectKit
import InspectProtos

/// One tool call as hooks see it: the tool, the call's id and attempt, its checked arguments,
/// and the turn.
struct ToolInvocation: Sendable {
  let tool: Tool
  let id: String
  let arguments: JSONValue
  let argumentsJSON: String
  let attempt: Int
  let turn: Inspect_Sandbox_V1_StartTurn

  /// A string argument by name (`path`, `command`…).
  func string(_ name: String) -> String? {
    if case .object(let members) = arguments, case .string(let value)? = members[name] { return value }
    return nil
  }
}

/// What a before-execute hook decides.
enum HookVerdict: Sendable, Equatable {
  /// Let the call go on to the next hook, then run.
  case proceed
  /// Refuse it: the call fails and the model reads the reason.
  case deny(String)
  /// A person must decide: the call waits (QUEUED, `awaiting_approval`) until someone with the
  /// right to prompt the session approves or denies it (`DecideToolCall`), or the turn stops.
  case ask(String)
}

/// What a finished call gives the model, as after-execute hooks may rewrite it.
struct ToolResultDraft: Sendable {
  var content: String
  var summary: String
  var failed: Bool
  /// The artifact holding the full output, when a hook cut it.
  var artifactID = ""
}

/// The extension point around every tool call. Before-execute hooks run in order after the
/// arguments were checked against the tool's schema; the first that does not proceed decides
/// (deny, or ask a person). After-execute hooks run in order on the result before the model and
/// the event log see it. Hooks must not block for long: a hook that waits (the sync gate, a
/// person's decision) is stopped with the turn.
///
/// ```swift
/// /// Refuses commands that would talk to production.
/// struct NoProduction: ToolHook {
///   func beforeExecute(_ call: ToolInvocation) async throws -> HookVerdict {
///     guard call.tool.name == "run_command", let command = call.string("command") else { return .proceed }
///     return command.contains("prod") ? .deny("commands against production are not allowed here") : .proceed
///   }
/// }
/// // AgentLoop(…, hooks: [NoProduction()]) adds it after the built-in hooks.
/// ```
protocol ToolHook: Sendable {
  func beforeExecute(_ call: ToolInvocation) async throws -> HookVerdict
  func afterExecute(_ call: ToolInvocation, result: inout ToolResultDraft) async throws
}

extension ToolHook {
  func beforeExecute(_ call: ToolInvocation) async throws -> HookVerdict { .proceed }
  func afterExecute(_ call: ToolInvocation, result: inout ToolResultDraft) async throws {}
}

// MARK: - Built-in hooks

/// Tools that write wait until the sandbox has synced; a failed or overlong sync ends the turn
/// FAILED in SYNC. Reading tools pass at once.
struct SyncGateHook: ToolHook {
  let sandbox: SandboxOfTurn

  func beforeExecute(_ call: ToolInvocation) async throws -> HookVerdict {
    if call.tool.writes { try await sandbox.synced() }
    return .proceed
  }
}

/// Paths in arguments (`path`, and every string of `paths`) must stay inside the workspace:
/// relative, without `..` leading out. The sandbox's file calls enforce this too (openat2); this
/// hook refuses such calls before they run, for every tool, with a reason the model can act on.
struct WorkspaceConfinementHook: ToolHook {
  func beforeExecute(_ call: ToolInvocation) async throws -> HookVerdict {
    var paths: [String] = []
    if case .object(let members) = call.arguments {
      if case .string(let path)? = members["path"] { paths.append(path) }
      if case .array(let list)? = members["paths"] {
        paths += list.compactMap { if case .string(let path) = $0 { path } else { nil } }
      }
    }
    for path in paths {
      if path.hasPrefix("/") || path.hasPrefix("~") {
        return .deny("\(call.tool.name): path '\(path)' is absolute; use a path relative to the repository root")
      }
      var depth = 0
      for segment in path.split(separator: "/") {
        if segment == ".." { depth -= 1 } else if segment != "." { depth += 1 }
        if depth < 0 {
          return .deny("\(call.tool.name): path '\(path)' leads outside the repository; stay inside it")
        }
      }
    }
    return .proceed
  }
}

/// Allow, ask or deny by rule: the first rule whose tool (and, when given, path or command) glob
/// matches decides; without a match the policy's default does. Only tools that write are
/// subject to it.
struct PermissionPolicy: Sendable, Decodable, Equatable {
  enum Decision: String, Sendable, Decodable {
    case allow, ask, deny
  }

  struct Rule: Sendable, Decodable, Equatable {
    /// A glob over tool names (`run_command`, `sentry.*`, `*`).
    var tool: String
    /// A glob over the call's `path` argument.
    var path: String?
    /// A glob over the call's `command` argument (`*` crosses `/` here).
    var command: String?
    var decision: Decision
    var reason: String?
  }

  var rules: [Rule] = []
  var `default` = Decision.allow

  enum CodingKeys: String, CodingKey { case rules, `default` }

  init(rules: [Rule] = [], default: Decision = .allow) {
    self.rules = rules
    self.default = `default`
  }

  init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    rules = try container.decodeIfPresent([Rule].self, forKey: .rules) ?? []
    self.default = try container.decodeIfPresent(Decision.self, forKey: .default) ?? .allow
  }

  /// Where a repository keeps its policy.
  static let repositoryFile = ".inspect/permissions.json"

  /// Reads a policy file's JSON; the error names `source` and what is wrong.
  static func parse(_ data: Data, source: String) throws -> PermissionPolicy {
    let policy: PermissionPolicy
    do {
      policy = try JSONDecoder().decode(PermissionPolicy.self, from: data)
    } catch {
      throw ToolFailure("\(source) is not a valid permission policy: \(error)")
    }
    for rule in policy.rules {
      for pattern in [rule.tool, rule.path, rule.command].compactMap({ $0 }) { _ = try GlobPattern(pattern) }
    }
    return policy
  }

  /// The policy's decision for `call`, with the rule's reason.
  func decision(for call: ToolInvocation) -> (Decision, String?) {
    for rule in rules {
      guard (try? GlobPattern(rule.tool))?.matches(call.tool.name) == true else { continue }
      if let path = rule.path {
        guard let value = call.string("path"), (try? GlobPattern(path))?.matches(value) == true else { continue }
      }
      if let command = rule.command {
        let pattern = command.replacingOccurrences(of: "*", with: "**")
        guard let value = call.string("command"), (try? GlobPattern(pattern))?.matches(value) == true else {
          continue
        }
      }
      return (rule.decision, rule.reason)
    }
    return (self.default, nil)
  }

  /// This policy's rules first, then `other`'s (its default counts only when this one has no
  /// rule and a default of allow).
  func then(_ other: PermissionPolicy) -> PermissionPolicy {
    PermissionPolicy(rules: rules + other.rules, default: self.default == .allow ? other.default : self.default)
  }
}

/// Applies a ``PermissionPolicy`` to tools that write.
struct PermissionHook: ToolHook {
  let policy: PermissionPolicy

  func beforeExecute(_ call: ToolInvocation) async throws -> HookVerdict {
    guard call.tool.writes else { return .proceed }
    switch policy.decision(for: call) {
    case (.allow, _):
      return .proceed
    case (.deny, let reason):
      return .deny("\(call.tool.name) is not allowed by the permission policy" + (reason.map { ": \($0)" } ?? ""))
    case (.ask, let reason):
      return .ask(reason ?? "the permission policy asks a person to approve \(call.tool.name)")
    }
  }
}

/// Output longer than `limit` bytes reaches the model (and the event log) as its head and tail
/// with a pointer to the whole output, stored as an artifact of the session.
struct OutputLimitHook: ToolHook {
  var limit = BuiltinTools.outputLimit
  let artifacts: ArtifactStore?
  let emit: @Sendable (Inspect_Session_V1_SessionEvent) async throws -> Void

  func afterExecute(_ call: ToolInvocation, result: inout ToolResultDraft) async throws {
    let size = result.content.utf8.count
    guard size > limit else { return }
    var pointer = "the whole output is not stored"
    if let artifacts {
      let artifact = try artifacts.store(
        Data(result.content.utf8), name: "\(call.tool.name)-\(call.id).txt", mediaType: "text/plain",
        kind: .toolOutput, session: call.turn.sessionID, turn: call.turn.turnID, toolCall: call.id)
      try await emit(.with { $0.artifactAdded = .with { $0.artifact = artifact } })
      result.artifactID = artifact.id
      pointer = "the whole output (\(size) bytes) is artifact \(artifact.id)"
    }
    let head = String(decoding: result.content.utf8.prefix(limit / 2), as: UTF8.self)
    let tail = String(decoding: result.content.utf8.suffix(limit / 2), as: UTF8.self)
    result.content = head + "\n… [\(size - limit) bytes omitted; \(pointer)] …\n" + tail
  }
}
