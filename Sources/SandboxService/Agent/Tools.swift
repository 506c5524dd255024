import Foundation
import InspectKit
import InspectProtos

/// What a tool needs while it runs: the sandbox (whatever driver runs it), the turn, and a way
/// to stream events.
struct ToolContext: Sendable {
  let sandbox: any SandboxInstance
  let turn: Inspect_Sandbox_V1_StartTurn
  let toolCallID: String
  let emit: @Sendable (Inspect_Session_V1_SessionEvent) async throws -> Void
  /// SessionService, for child sessions (nil where there is none).
  var sessions: SessionServiceClient?
  /// Where a tool stores what it makes (screenshots); nil where nothing is kept.
  var artifacts: ArtifactStore?
}

/// A tool's result: what the model sees, and a one-line summary for people.
struct ToolOutput: Sendable {
  var content: String
  var summary: String
  /// The artifact the tool made (a screenshot), announced by the tool's own `artifact_added`.
  var artifactID = ""
}

/// A tool the agent can call: its contract (name, description, JSON Schema of the arguments,
/// whether it reads or writes, how long it may run, how often a transient failure is retried)
/// and its handler. Arguments are checked against the schema before the handler runs
/// (``ToolRegistry``). Handlers throw ``ToolFailure`` for errors the model should read.
struct Tool: Sendable {
  enum Access: String, Sendable {
    /// Reads the workspace only: runs at once, even while the sandbox syncs.
    case read
    /// Changes the workspace, runs commands or acts outside: waits for the sync and goes through
    /// the permission policy.
    case write
  }

  let name: String
  let description: String
  let schema: String
  var access = Access.write
  /// The longest one attempt may run before it fails (timed out).
  var timeout: Duration = .seconds(120)
  /// Further attempts after a failure the handler marks ``ToolFailure/retryable``.
  var retries = 0
  let run: @Sendable (_ arguments: Data, _ context: ToolContext) async throws -> ToolOutput

  init(
    name: String, description: String, schema: String, access: Access = .write, timeout: Duration = .seconds(120),
    retries: Int = 0, run: @escaping @Sendable (_ arguments: Data, _ context: ToolContext) async throws -> ToolOutput
  ) {
    self.name = name
    self.description = description
    self.schema = schema
    self.access = access
    self.timeout = timeout
    self.retries = retries
    self.run = run
  }

  /// Whether the tool changes anything (waits for the sync, subject to the permission policy).
  var writes: Bool { access == .write }

  var proto: Inspect_Model_V1_Tool {
    .with {
      $0.name = name
      $0.description_p = description
      $0.jsonSchema = schema
    }
  }
}

/// An error a tool reports to the model (bad arguments, missing file, a failed command).
struct ToolFailure: Error, CustomStringConvertible {
  let description: String
  /// Whether trying again can succeed (a service that timed out), so the call is retried up to
  /// the tool's `retries`.
  var retryable = false
  init(_ description: String, retryable: Bool = false) {
    self.description = description
    self.retryable = retryable
  }
}

/// The built-in tools of a turn.
enum BuiltinTools {
  static let all: [Tool] = [
    readFile, listFiles, glob, search, editFile, writeFile, runCommand, gitDiff, gitCommitAndPush, screenshot,
    spawnChildSession, childSessionStatus,
  ]

  static func decode<T: Decodable>(_ type: T.Type, _ data: Data, tool: String) throws -> T {
    do {
      return try JSONDecoder().decode(T.self, from: data.isEmpty ? Data("{}".utf8) : data)
    } catch {
      throw ToolFailure("\(tool): the arguments are not valid: \(error)")
    }
  }

  /// Output longer than this reaches the model as its head and tail, the whole of it stored as
  /// an artifact (``OutputLimitHook``, the one place outputs are cut).
  static let outputLimit = 16 * 1024

  // MARK: - Files

  static let readFile = Tool(
    name: "read_file",
    description:
      "Read a text file of the repository, whole or a range of lines (1-based, inclusive). Long files come back "
      + "cut in the middle; read them by ranges.",
    schema: """
      {"type":"object","properties":{"path":{"type":"string","minLength":1,"description":"Path relative to the repository root"},\
      "start_line":{"type":"integer","minimum":1},"end_line":{"type":"integer","minimum":1}},\
      "required":["path"],"additionalProperties":false}
      """,
    access: .read
  ) { data, context in
    struct Arguments: Decodable {
      let path: String
      let startLine: Int?
      let endLine: Int?
      enum CodingKeys: String, CodingKey {
        case path
        case startLine = "start_line"
        case endLine = "end_line"
      }
    }
    let arguments = try decode(Arguments.self, data, tool: "read_file")
    let file = try context.sandbox.readFile(arguments.path, offset: 0, limit: 0)
    let text = String(decoding: file.content, as: UTF8.self)
    guard arguments.startLine != nil || arguments.endLine != nil else {
      return ToolOutput(content: text, summary: "read \(arguments.path) (\(file.size) bytes)")
    }
    var lines = text.components(separatedBy: "\n")
    if lines.last == "" { lines.removeLast() }
    let first = arguments.startLine ?? 1
    let last = min(arguments.endLine ?? lines.count, lines.count)
    guard first <= max(last, 1), first <= max(lines.count, 1) else {
      throw ToolFailure(
        "read_file: \(arguments.path) has \(lines.count) lines; lines \(first)–\(arguments.endLine ?? first) do not exist"
      )
    }
    let slice = lines.isEmpty ? [] : Array(lines[(first - 1)..<last])
    return ToolOutput(
      content: "lines \(first)–\(last) of \(lines.count):\n" + slice.joined(separator: "\n"),
      summary: "read \(arguments.path) lines \(first)–\(last)")
  }

  static let listFiles = Tool(
    name: "list_files", description: "List the files of the repository (or of one directory), recursively.",
    schema:
      #"{"type":"object","properties":{"path":{"type":"string","description":"Directory relative to the repository root; default the root"}}}"#,
    access: .read
  ) { data, context in
    struct Arguments: Decodable { let path: String? }
    let arguments = try decode(Arguments.self, data, tool: "list_files")
    let listing = try context.sandbox.listFiles(arguments.path ?? "", recursive: true, maxEntries: 5000)
    let files = listing.entries.filter { $0.kind == .file }.prefix(1000).map(\.path)
    return ToolOutput(content: files.joined(separator: "\n"), summary: "\(files.count) files")
  }

  static let editFile = Tool(
    name: "edit_file",
    description: "Replace an exact piece of text in a file. old_text must occur exactly once.",
    schema:
      #"{"type":"object","properties":{"path":{"type":"string"},"old_text":{"type":"string"},"new_text":{"type":"string"}},"required":["path","old_text","new_text"]}"#
  ) { data, context in
    struct Arguments: Decodable {
      let path: String
      let oldText: String
      let newText: String
      enum CodingKeys: String, CodingKey {
        case path
        case oldText = "old_text"
        case newText = "new_text"
      }
    }
    let arguments = try decode(Arguments.self, data, tool: "edit_file")
    let file = try context.sandbox.readFile(arguments.path, offset: 0, limit: 0)
    guard !file.truncated else {
      throw ToolFailure("edit_file: \(arguments.path) is too large to edit (\(file.size) bytes); use run_command")
    }
    let text = String(decoding: file.content, as: UTF8.self)
    let occurrences = text.components(separatedBy: arguments.oldText).count - 1
    guard !arguments.oldText.isEmpty, occurrences == 1 else {
      throw ToolFailure(
        "edit_file: old_text occurs \(occurrences) times in \(arguments.path); it must occur exactly once")
    }
    try context.sandbox.writeFile(
      arguments.path, content: Data(text.replacingOccurrences(of: arguments.oldText, with: arguments.newText).utf8),
      mode: nil, createParents: false)
    return ToolOutput(content: "edited \(arguments.path)", summary: "edited \(arguments.path)")
  }

  static let writeFile = Tool(
    name: "write_file", description: "Create or overwrite a file with the given content.",
    schema:
      #"{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path","content"]}"#
  ) { data, context in
    struct Arguments: Decodable {
      let path: String
      let content: String
    }
    let arguments = try decode(Arguments.self, data, tool: "write_file")
    try context.sandbox.writeFile(arguments.path, content: Data(arguments.content.utf8), mode: nil, createParents: true)
    return ToolOutput(
      content: "wrote \(arguments.path)", summary: "wrote \(arguments.path) (\(arguments.content.utf8.count) bytes)")
  }

  // MARK: - Commands

  static let runCommand = Tool(
    name: "run_command",
    description: "Run a shell command in the repository's sandbox (no network). Output streams live.",
    schema:
      #"{"type":"object","properties":{"command":{"type":"string","minLength":1},"timeout_seconds":{"type":"integer","minimum":1,"maximum":600}},"required":["command"]}"#,
    // The command's own timeout (at most 600 s) ends it first; this bounds the whole call.
    timeout: .seconds(630)
  ) { data, context in
    struct Arguments: Decodable {
      let command: String
      let timeoutSeconds: Int?
      enum CodingKeys: String, CodingKey {
        case command
        case timeoutSeconds = "timeout_seconds"
      }
    }
    let arguments = try decode(Arguments.self, data, tool: "run_command")
    let timeout = Duration.seconds(min(max(arguments.timeoutSeconds ?? 120, 1), 600))
    let forwarder = OutputForwarder(toolCallID: context.toolCallID, emit: context.emit)
    let result = try await context.sandbox.exec(arguments.command, timeout: timeout) {
      isError, data in forwarder.send(isError ? .stderr : .stdout, data)
    }
    await forwarder.flush()
    let output = String(decoding: result.stdout, as: UTF8.self) + String(decoding: result.stderr, as: UTF8.self)
    let status = result.timedOut ? "timed out after \(timeout)" : "exit code \(result.exitCode)"
    let content = "\(status)\n\(output)"
    guard result.succeeded else { throw ToolFailure(content) }
    return ToolOutput(content: content, summary: "\(arguments.command): \(status)")
  }

  // MARK: - Git

  static let gitCommitAndPush = Tool(
    name: "git_commit_and_push",
    description: "Commit every change in the repository and push it to the session's branch.",
    schema:
      #"{"type":"object","properties":{"message":{"type":"string","description":"The commit message"}},"required":["message"]}"#
  ) { data, context in
    struct Arguments: Decodable { let message: String }
    let arguments = try decode(Arguments.self, data, tool: "git_commit_and_push")
    guard !arguments.message.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
      throw ToolFailure("git_commit_and_push: the commit message is empty")
    }
    let turn = context.turn
    let author = turn.prompts.last.map(commitIdentity) ?? ("Inspect", "bot@inspect.local")
    let message = arguments.message + coAuthorTrailers(for: turn, author: author)
    let committer = turn.hasCommitter ? (turn.committer.name, turn.committer.email) : ("Inspect", "bot@inspect.local")
    let result: (commit: String, remote: String)?
    do {
      result = try await context.sandbox.commitAndPush(
        branch: turn.sessionBranch, message: message, author: author, committer: committer)
    } catch {
      throw pushFailure(error, branch: turn.sessionBranch)
    }
    guard let pushed = result else { throw ToolFailure("git_commit_and_push: there is nothing to commit") }
    try await context.emit(
      .with {
        $0.branchPushed = .with {
          $0.branch = turn.sessionBranch
          $0.commit = pushed.commit
          $0.remote = pushed.remote
          $0.baseBranch = turn.baseBranch
        }
      })
    return ToolOutput(
      content: "committed \(pushed.commit) and pushed it to \(turn.sessionBranch)",
      summary: "pushed \(String(pushed.commit.prefix(12))) to \(turn.sessionBranch)")
  }
}

/// What a failed commit-and-push becomes: a missing or refused credential, a repository the app
/// cannot reach, or GitHub being down ends the turn FAILED in PUSH with the reason (the agent
/// cannot fix those); a conflict with someone else's push, or any other git failure, is a failed
/// tool call the agent sees and can act on.
func pushFailure(_ error: any Error, branch: String) -> any Error {
  switch error {
  case SandboxError.permissionDenied(let reason), SandboxError.notFound(let reason),
    SandboxError.unavailable(let reason), SandboxError.unsupported(let reason):
    return TurnEnd(finished: .failed(.push, "pushing \(branch) failed: \(reason)"))
  case let failure as ToolFailure:
    return failure
  default:
    return ToolFailure("git_commit_and_push: \(error)")
  }
}

/// Who a prompt's commits are by: the prompt's commit identity when SessionService gave one,
/// else its author (their profile's email, else an address made from their user id).
func commitIdentity(_ prompt: Inspect_Sandbox_V1_TurnPrompt) -> (name: String, email: String) {
  if prompt.hasCommitAuthor { return (prompt.commitAuthor.name, prompt.commitAuthor.email) }
  let author = prompt.author
  return (
    author.displayName.isEmpty ? (author.userID.isEmpty ? "Inspect user" : author.userID) : author.displayName,
    author.email.isEmpty ? "\(author.userID)@users.inspect.local" : author.email
  )
}

/// `Co-authored-by` trailers for the other people who prompted the session (this turn and the
/// history it was given), in the order they first prompted; empty when there are none.
func coAuthorTrailers(for turn: Inspect_Sandbox_V1_StartTurn, author: (name: String, email: String)) -> String {
  let prompts =
    turn.history.items.compactMap { item -> Inspect_Sandbox_V1_TurnPrompt? in
      if case .prompt(let prompt) = item.kind { prompt } else { nil }
    } + turn.prompts
  /// Names and addresses as one trailer line can hold them.
  func clean(_ text: String) -> String {
    String(text.unicodeScalars.filter { !CharacterSet.newlines.contains($0) && $0 != "<" && $0 != ">" })
      .trimmingCharacters(in: .whitespaces)
  }
  let authorUser = turn.prompts.last?.author.userID ?? ""
  var seen: Set<String> = [author.email.lowercased()]
  var seenUsers: Set<String> = authorUser.isEmpty ? [] : [authorUser]
  var trailers: [String] = []
  for prompt in prompts where !prompt.author.userID.isEmpty || prompt.hasCommitAuthor {
    let identity = commitIdentity(prompt)
    if !prompt.author.userID.isEmpty, !seenUsers.insert(prompt.author.userID).inserted { continue }
    guard seen.insert(identity.email.lowercased()).inserted else { continue }
    trailers.append("Co-authored-by: \(clean(identity.name)) <\(clean(identity.email))>")
  }
  return trailers.isEmpty ? "" : "\n\n" + trailers.joined(separator: "\n")
}

/// Sends a command's output as `command_output` events, in order, from the pipe callbacks.
final class OutputForwarder: Sendable {
  private let continuation: AsyncStream<(ProcessRunner.Stream, Data)>.Continuation
  private let task: Task<Void, Never>

  init(toolCallID: String, emit: @escaping @Sendable (Inspect_Session_V1_SessionEvent) async throws -> Void) {
    let (stream, continuation) = AsyncStream.makeStream(of: (ProcessRunner.Stream, Data).self)
    self.continuation = continuation
    task = Task {
      for await (kind, data) in stream {
        try? await emit(
          .with {
            $0.commandOutput = .with {
              $0.toolCallID = toolCallID
              $0.stream = kind == .stdout ? .stdout : .stderr
              $0.data = data
            }
          })
      }
    }
  }

  func send(_ stream: ProcessRunner.Stream, _ data: Data) { continuation.yield((stream, data)) }

  /// Waits until everything sent has been emitted.
  func flush() async {
    continuation.finish()
    await task.value
  }
}
