import Foundation
import InspectKit
import InspectProtos
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// What runs sandboxes. Everything above it — `SandboxManager`, the RPCs, the agent loop and its
/// tools — talks to a driver and its sandboxes only through this protocol and
/// ``SandboxInstance``, so a driver that runs sandboxes elsewhere (Kubernetes pods) can be added
/// without touching them.
///
/// Two implementations exist: ``LocalDriver`` (overlayfs, bubblewrap and cgroups on this
/// machine) and the tests' `DirectoryDriver` (a plain directory and host processes), which runs
/// the same agent turns and RPCs through this interface.
///
/// A driver's duties:
/// - images: a read-only tree of a repository at a commit, built on demand (`image(for:…)`);
/// - sandboxes: `createSandbox` makes one from an image, `restoreSandbox` from a snapshot; both
///   return a running sandbox whose commands and files are confined to its workspace;
/// - snapshots: `snapshot` archives a sandbox's writable layer with its metadata, `snapshotRecord`
///   finds one (also after the sandbox is gone).
protocol SandboxDriver: Sendable {
  /// `local`, `kubernetes`, … (reported in `Sandbox.driver`).
  var name: String { get }
  /// The node that runs this driver's sandboxes (`Sandbox.node`).
  var node: String { get }

  /// The image of `repository` at the newest commit of `branch` (falling back to `fallback`
  /// when `branch` does not exist), built now when no image of that commit exists.
  func image(for repository: RepositoryName, branch: String, fallback: String) async throws -> Image

  /// Builds a new image of `branch` (empty: the default branch) unless its newest commit has a
  /// READY image already and `force` is false (then that image, `unchanged`). A failed setup
  /// gives an image in state FAILED; fetch or checkout failures throw.
  func buildImage(
    _ repository: RepositoryName, branch: String, force: Bool,
    progress: @escaping @Sendable (ImageBuildEvent) -> Void
  ) async throws -> (image: Image, unchanged: Bool)

  /// Images of `repository` (empty: all), newest first.
  func images(repository: String) -> [Image]

  /// Deletes an image no sandbox uses any more.
  func removeImage(_ id: String)

  /// Starts a new sandbox over `image`.
  func createSandbox(
    from image: Image, repository: RepositoryName, limits: SandboxLimits?
  ) async throws -> any SandboxInstance

  /// Archives the writable layer of `sandbox` as snapshot `id`.
  func snapshot(
    _ sandbox: any SandboxInstance, id: String, sessionID: String, branch: String
  ) async throws
    -> SnapshotRecord

  /// The snapshot's metadata; nil when there is no such (complete) snapshot.
  func snapshotRecord(_ id: String) -> SnapshotRecord?

  /// The complete snapshots of a session's sandboxes, newest first.
  func snapshots(session sessionID: String) -> [SnapshotRecord]

  /// Deletes a snapshot (archive and metadata).
  func removeSnapshot(_ id: String)

  /// Starts a new sandbox from a snapshot: its image plus the archived layer. Throws
  /// ``SandboxError/notFound(_:)`` naming the image when it is gone.
  func restoreSandbox(from snapshot: SnapshotRecord, limits: SandboxLimits?) async throws -> any SandboxInstance

  /// Clones or fetches the repository's bare mirror and describes it. Throws
  /// ``SandboxError/notFound(_:)`` when the repository cannot be fetched.
  func mirror(_ repository: RepositoryName) async throws -> MirrorInfo

  /// Fetches the repository's mirror and compares two of its branches (`git diff base...head`).
  func compareBranches(
    _ repository: RepositoryName, base: String, head: String, maxPatchBytes: Int
  ) async throws -> Inspect_Common_V1_BranchDiff
}

/// A repository's mirror after a fetch.
struct MirrorInfo: Sendable, Equatable {
  /// The mirror's HEAD, e.g. `main`.
  var defaultBranch: String
  /// The newest commit of the default branch.
  var headCommit: String
  var branches: Int
}

extension SandboxDriver {
  func mirror(_ repository: RepositoryName) async throws -> MirrorInfo {
    throw SandboxError.unsupported("the \(name) driver keeps no repository mirrors")
  }

  func compareBranches(
    _ repository: RepositoryName, base: String, head: String, maxPatchBytes: Int
  ) async throws -> Inspect_Common_V1_BranchDiff {
    throw SandboxError.unsupported("the \(name) driver keeps no repository mirrors")
  }
}

/// A running sandbox, as its users see it: commands, files and git, all confined to it.
protocol SandboxInstance: AnyObject, Sendable {
  var id: String { get }
  var repository: RepositoryName { get }
  var image: Image { get }
  /// Whether the sandbox can still run commands.
  var isAlive: Bool { get }

  /// Starts `argv` in the sandbox (working directory relative to the workspace).
  func start(_ argv: [String], environment: [String: String], directory: String) throws -> RunningCommand

  func readFile(_ path: String, offset: UInt64, limit: UInt64) throws -> FileContent
  /// Writes `content`; `mode` nil keeps the current mode (0644 for a new file). Returns the size.
  @discardableResult
  func writeFile(_ path: String, content: Data, mode: UInt32?, createParents: Bool) throws -> UInt64
  func listFiles(_ path: String, recursive: Bool, maxEntries: Int) throws -> FileListing

  /// Records which session claimed the sandbox and its branch (a driver may persist it, e.g. to
  /// save the session's work after a crash).
  func claimed(by sessionID: String, branch: String)

  /// Brings the workspace to the newest commit of `branch` (else `fallback`); returns the commit.
  func sync(branch: String, fallback: String) async throws -> String

  /// Commits everything (author and committer as given) and pushes it as `branch`; the commit
  /// and the remote, or nil when nothing changed.
  func commitAndPush(
    branch: String, message: String, author: (name: String, email: String),
    committer: (name: String, email: String)
  ) async throws -> (commit: String, remote: String)?

  /// The changes in the workspace against the commit it started from (new files included), as
  /// a unified diff made on the host side.
  func diff() async throws -> String

  /// Kills every process of the sandbox and frees what it holds. Idempotent; runs to its end
  /// even when the calling task is cancelled.
  func terminate() async
}

extension SandboxInstance {
  func diff() async throws -> String {
    throw SandboxError.unsupported("this sandbox driver cannot show a diff")
  }
}

/// A command started in a sandbox: its events, and its standard input and signals.
final class RunningCommand: Sendable {
  let events: AsyncStream<CommandEvent>
  private let input: @Sendable (Data?) async throws -> Void
  private let deliver: @Sendable (Int32) -> Void
  private let releaseInput: @Sendable () -> Void

  /// `input` writes to the command's standard input (nil closes it); `deliver` sends a signal
  /// to the command's process group; `release` gives up on standard input at once (a write
  /// waiting for room in the pipe ends).
  init(
    events: AsyncStream<CommandEvent>, input: @escaping @Sendable (Data?) async throws -> Void,
    signal: @escaping @Sendable (Int32) -> Void, release: @escaping @Sendable () -> Void = {}
  ) {
    self.events = events
    self.input = input
    self.deliver = signal
    self.releaseInput = release
  }

  func write(_ data: Data) async throws { try await input(data) }
  func closeInput() async throws { try await input(nil) }
  func signal(_ signal: Int32) { deliver(signal) }
  /// Called once the command has ended.
  func release() { releaseInput() }
}

/// Part of a file.
struct FileContent: Sendable {
  var content: Data
  var size: UInt64
  var truncated: Bool
}

/// A directory listing (paths relative to the workspace, sorted).
struct FileListing: Sendable {
  struct Entry: Sendable, Equatable {
    enum Kind: Sendable { case file, directory, symlink, other }
    var path: String
    var kind: Kind
    var size: UInt64
    var mode: UInt32
    var modified: Date
  }
  var entries: [Entry]
  var truncated: Bool
}

/// A snapshot's metadata (`snapshots/<id>.json` next to `<id>.tar.zst`).
struct SnapshotRecord: Codable, Sendable, Equatable {
  var id: String
  var sessionID: String
  var sandboxID: String
  var imageID: String
  var repository: String
  /// The image's commit (to build the image again if it was removed).
  var imageCommit: String?
  /// The commit the workspace was based on (the last sync or commit).
  var commit: String
  var branch: String
  var createdAt: Date
  var sizeBytes: UInt64
  var durationMilliseconds: Double
}

extension SandboxInstance {
  /// Runs `argv` to its end, killing its process group after `timeout` or when the calling task
  /// is cancelled; `onOutput` sees each chunk as it arrives. Of each output stream the first and
  /// last `outputLimit / 2` bytes are kept.
  func run(
    _ argv: [String], environment: [String: String] = [:], directory: String = "", timeout: Duration,
    outputLimit: Int = 1 << 20, onOutput: (@Sendable (_ isError: Bool, Data) -> Void)? = nil
  ) async throws -> CommandResult {
    let clock = ContinuousClock()
    let started = clock.now
    let command = try start(argv, environment: environment, directory: directory)
    let timer = CommandTimer(command, after: timeout)
    defer { timer.cancel() }
    var result = CommandResult(exitCode: -1, stdout: Data(), stderr: Data(), timedOut: false, duration: .zero)
    var (stdout, stderr) = (OutputBuffer(limit: outputLimit), OutputBuffer(limit: outputLimit))
    try await withTaskCancellationHandler {
      for await event in command.events {
        switch event {
        case .started: break
        case .stdout(let data):
          stdout.append(data)
          onOutput?(false, data)
        case .stderr(let data):
          stderr.append(data)
          onOutput?(true, data)
        case .exited(let code, _):
          result.exitCode = code
        case .failed(let reason):
          throw SandboxError.failed("\(argv.first ?? "the command") could not run in the sandbox: \(reason)")
        }
      }
    } onCancel: {
      command.signal(SIGKILL)
    }
    command.release()
    try Task.checkCancellation()
    result.stdout = stdout.data
    result.stdoutDropped = stdout.dropped
    result.stderr = stderr.data
    result.timedOut = timer.fired
    result.duration = clock.now - started
    return result
  }

  /// Runs `command` with `/bin/sh -c` in the workspace.
  func exec(
    _ command: String, timeout: Duration, onOutput: (@Sendable (_ isError: Bool, Data) -> Void)? = nil
  ) async throws -> CommandResult {
    try await run(["/bin/sh", "-c", command], timeout: timeout, onOutput: onOutput)
  }
}

/// What is kept of a command's output stream: its first and last `limit / 2` bytes (the middle of
/// a command that prints gigabytes is dropped, not held in the service's memory).
struct OutputBuffer: Sendable {
  var limit = 1 << 20
  private var head = Data()
  private var tail = Data()
  private(set) var dropped = 0

  init(limit: Int = 1 << 20) { self.limit = limit }

  mutating func append(_ data: Data) {
    var rest = data[...]
    if head.count < limit / 2 {
      let taken = min(limit / 2 - head.count, rest.count)
      head.append(rest.prefix(taken))
      rest = rest.dropFirst(taken)
    }
    tail.append(rest)
    // Trim in batches so that appending stays linear.
    if tail.count > limit {
      let excess = tail.count - limit / 2
      tail.removeFirst(excess)
      dropped += excess
    }
  }

  var data: Data {
    dropped == 0 ? head + tail : head + Data("\n… [\(dropped) bytes dropped] …\n".utf8) + tail
  }
}

/// Kills a command's process group when its time is up, and remembers that it did.
final class CommandTimer: Sendable {
  private let state = Mutex(false)
  private let task = Mutex<Task<Void, any Error>?>(nil)

  init(_ command: RunningCommand, after timeout: Duration) {
    let timer = Task { [weak self] in
      try await Task.sleep(for: timeout)
      self?.state.withLock { $0 = true }
      command.signal(SIGKILL)
    }
    task.withLock { $0 = timer }
  }

  var fired: Bool { state.withLock { $0 } }
  func cancel() { task.withLock { $0 }?.cancel() }
}

/// The JSON form of the service's files (images, snapshots, sandbox state): ISO 8601 dates,
/// sorted keys.
enum JSONCoding {
  static var encoder: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.dateEncodingStrategy = .iso8601
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return encoder
  }

  static var decoder: JSONDecoder {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return decoder
  }
}

/// An asynchronous lock per key (e.g. one git operation per repository mirror at a time).
actor KeyedLock {
  private var held: Set<String> = []
  private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

  func withLock<T: Sendable>(_ key: String, _ body: @Sendable () async throws -> T) async rethrows -> T {
    await lock(key)
    defer { unlock(key) }
    return try await body()
  }

  private func lock(_ key: String) async {
    guard held.contains(key) else {
      held.insert(key)
      return
    }
    await withCheckedContinuation { waiting[key, default: []].append($0) }
  }

  private func unlock(_ key: String) {
    if var queue = waiting[key], !queue.isEmpty {
      let next = queue.removeFirst()
      waiting[key] = queue.isEmpty ? nil : queue
      next.resume()
    } else {
      held.remove(key)
    }
  }
}
