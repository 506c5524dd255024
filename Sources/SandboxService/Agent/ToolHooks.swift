import Foundation
import InspectKit
import InspectProtos
import Synchronization

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
    /// A glob over tool names (`run_command`, `mcp_*`, `*`).
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
    do {
      _ = try CompiledPermissions(policy.rules)
    } catch {
      throw ToolFailure("\(source) is not a valid permission policy: \(error)")
    }
    return policy
  }
}

/// Rules with their globs compiled once, matched against calls.
struct CompiledPermissions: Sendable {
  struct Rule: Sendable {
    let rule: PermissionPolicy.Rule
    let tool: GlobPattern
    let path: GlobPattern?
    let command: GlobPattern?

    init(_ rule: PermissionPolicy.Rule) throws {
      self.rule = rule
      tool = try GlobPattern(rule.tool)
      path = try rule.path.map { try GlobPattern($0) }
      command = try rule.command.map {
        try GlobPattern($0.replacingOccurrences(of: "*", with: "**"), acrossLines: true)
      }
    }

    /// `path` without `.` segments, empty segments and the `..` that undo earlier ones, so that
    /// `./a/../.github/x` is matched as `.github/x`.
    static func normalized(_ path: String) -> String {
      var segments: [Substring] = []
      for segment in path.split(separator: "/", omittingEmptySubsequences: true) where segment != "." {
        if segment == "..", let last = segments.last, last != ".." {
          segments.removeLast()
        } else {
          segments.append(segment)
        }
      }
      return segments.joined(separator: "/")
    }

    func matches(_ call: ToolInvocation) -> Bool {
      guard tool.matches(call.tool.name) else { return false }
      if let path {
        guard let value = call.string("path"), path.matches(Self.normalized(value)) else { return false }
      }
      if let command {
        guard let value = call.string("command"), command.matches(value) else { return false }
      }
      return true
    }
  }

  let rules: [Rule]

  init(_ rules: [PermissionPolicy.Rule]) throws { self.rules = try rules.map(Rule.init) }

  /// The first rule that matches `call`.
  func match(_ call: ToolInvocation) -> PermissionPolicy.Rule? { rules.first { $0.matches(call) }?.rule }
}

/// A session's own rules, newest first: those SessionService gave the turn, and decisions people
/// asked to remember while it runs (``remember(_:)``).
final class SessionPermissions: Sendable {
  private let rules: Mutex<[CompiledPermissions.Rule]>

  /// The turn's session rules (malformed ones are skipped: SessionService checks them on entry).
  init(_ rules: [Inspect_Session_V1_PermissionRule] = []) {
    self.rules = Mutex(
      rules.compactMap { proto in PermissionPolicy.Rule(proto).flatMap { try? CompiledPermissions.Rule($0) } })
  }

  func match(_ call: ToolInvocation) -> PermissionPolicy.Rule? {
    rules.withLock { rules in rules.first { $0.matches(call) }?.rule }
  }

  /// A person's decision on one call, remembered for the rest of the session's calls of that tool.
  func remember(_ decision: Inspect_Sandbox_V1_ToolDecision, tool: String) {
    let who = decision.decidedBy.displayName.isEmpty ? "a person" : decision.decidedBy.displayName
    let reason =
      "\(decision.approved ? "allowed" : "denied") for this session by \(who)"
      + (decision.reason.isEmpty ? "" : ": \(decision.reason)")
    let rule = PermissionPolicy.Rule(
      tool: tool, decision: decision.approved ? .allow : .deny,
      reason: reason)
    guard let compiled = try? CompiledPermissions.Rule(rule) else { return }
    rules.withLock { $0.insert(compiled, at: 0) }
  }
}

extension PermissionPolicy.Rule {
  /// A session rule from its proto form; nil when it has no decision.
  init?(_ rule: Inspect_Session_V1_PermissionRule) {
    let decision: PermissionPolicy.Decision
    switch rule.decision {
    case .allow: decision = .allow
    case .ask: decision = .ask
    case .deny: decision = .deny
    default: return nil
    }
    self.init(
      tool: rule.tool, path: rule.path.isEmpty ? nil : rule.path, command: rule.command.isEmpty ? nil : rule.command,
      decision: decision, reason: rule.reason.isEmpty ? nil : rule.reason)
  }
}

/// Applies the permission policies to tools that write, in layers: a deny of the service
/// (`INSPECT_AGENT_PERMISSIONS`) or of the repository (`.inspect/permissions.json`) always holds —
/// a deny rule that matches, or a default of deny where no rule of theirs matches; otherwise the
/// session's rules decide first (people in the session can allow what the repository asks
/// about), then the repository's, then the service's; without a matching rule, the stricter of
/// the two defaults.
struct PermissionHook: ToolHook {
  let service: CompiledPermissions
  let serviceDefault: PermissionPolicy.Decision
  let repository: CompiledPermissions?
  let repositoryDefault: PermissionPolicy.Decision
  let session: SessionPermissions

  init(service: PermissionPolicy, repository: PermissionPolicy?, session: SessionPermissions) throws {
    self.service = try CompiledPermissions(service.rules)
    serviceDefault = service.default
    self.repository = try repository.map { try CompiledPermissions($0.rules) }
    repositoryDefault = repository?.default ?? .allow
    self.session = session
  }

  /// The decision for `call`, with the deciding rule's reason.
  func decision(for call: ToolInvocation) -> (PermissionPolicy.Decision, String?) {
    let fromService = service.match(call)
    let fromRepository = repository?.match(call)
    for rule in [fromService, fromRepository].compactMap({ $0 }) where rule.decision == .deny {
      return (.deny, rule.reason)
    }
    // Without a rule of either, the stricter default: a session cannot lift a default deny.
    let base = fromRepository.map { ($0.decision, $0.reason) } ?? fromService.map { ($0.decision, $0.reason) }
    if base == nil, serviceDefault == .deny || repositoryDefault == .deny { return (.deny, nil) }
    if let rule = session.match(call) { return (rule.decision, rule.reason) }
    return base ?? ((serviceDefault == .ask || repositoryDefault == .ask) ? .ask : .allow, nil)
  }

  func beforeExecute(_ call: ToolInvocation) async throws -> HookVerdict {
    guard call.tool.writes else { return .proceed }
    switch decision(for: call) {
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
