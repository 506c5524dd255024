import Foundation
import InspectKit
import InspectTestSupport
import Logging
import Synchronization

@testable import SandboxService

/// A second ``SandboxDriver``, for tests of everything above the driver interface: a sandbox is a
/// plain copy of a git checkout on the host, its commands are host processes started in it.
/// No isolation at all — it exists to prove that the manager, the RPCs, the agent loop and its
/// tools work through the interface alone, and to make a sync as slow as a test needs
/// (`syncRelease`).
struct DirectoryDriver: SandboxDriver {
  let name = "directory"
  let node = "test"
  let root: URL
  /// `local/<name>` is the bare repository `remotes/<name>.git` under `root`.
  let remotes: URL
  /// When set, every sync waits until the gate is opened.
  let syncRelease: Gate?
  /// Images by commit.
  let imageCache = ImageCache()

  final class ImageCache: Sendable {
    let images = Mutex<[String: Image]>([:])
  }

  init(root: URL, syncRelease: Gate? = nil) {
    self.root = root
    remotes = root.appendingPathComponent("remotes", isDirectory: true)
    self.syncRelease = syncRelease
  }

  func remote(_ repository: RepositoryName) -> URL {
    remotes.appendingPathComponent("\(repository.name).git")
  }

  func image(for repository: RepositoryName, branch: String, fallback: String) async throws -> Image {
    let commit = try await Git.run([
      "--git-dir", remote(repository).path, "rev-parse", "--verify", (branch.isEmpty ? "HEAD" : branch) + "^{commit}",
    ])
    if let image = imageCache.images.withLock({ $0[commit] }) { return image }
    let id = Identifier.make(.image)
    let directory = root.appendingPathComponent("images/\(id)")
    try FileManager.default.createDirectory(
      at: directory.deletingLastPathComponent(), withIntermediateDirectories: true)
    try await Git.run(["clone", "--quiet", remote(repository).path, directory.path])
    try await Git.run(["-C", directory.path, "checkout", "--quiet", "--detach", commit])
    let image = Image(id: id, repository: repository.description, commit: commit, nonce: "directory", builtAt: Date())
    imageCache.images.withLock { $0[commit] = image }
    return image
  }

  func buildImage(
    _ repository: RepositoryName, branch: String, force: Bool,
    progress: @escaping @Sendable (ImageBuildEvent) -> Void
  ) async throws -> (image: Image, unchanged: Bool) {
    let known = imageCache.images.withLock { Set($0.keys) }
    let image = try await image(for: repository, branch: branch, fallback: "")
    return (image, known.contains(image.commit))
  }

  func images(repository: String) -> [Image] {
    imageCache.images.withLock { Array($0.values) }.filter { repository.isEmpty || $0.repository == repository }
      .sorted { $0.builtAt > $1.builtAt }
  }

  func removeImage(_ id: String) {
    imageCache.images.withLock { images in images = images.filter { $0.value.id != id } }
  }

  func createSandbox(
    from image: Image, repository: RepositoryName, limits: SandboxLimits?
  ) async throws
    -> any SandboxInstance
  {
    let id = Identifier.make(.sandbox)
    let directory = root.appendingPathComponent("sandboxes/\(id)")
    try FileManager.default.createDirectory(
      at: directory.deletingLastPathComponent(), withIntermediateDirectories: true)
    let copy = try await ProcessRunner.run(
      "/bin/cp", ["-a", root.appendingPathComponent("images/\(image.id)").path, directory.path])
    guard copy.succeeded else { throw SandboxError.failed("cp: \(copy.combinedText)") }
    return DirectorySandbox(id: id, repository: repository, image: image, directory: directory, driver: self)
  }

  func snapshot(
    _ sandbox: any SandboxInstance, id: String, sessionID: String, branch: String
  ) async throws
    -> SnapshotRecord
  {
    guard let sandbox = sandbox as? DirectorySandbox else { throw SandboxError.invalid("not a directory sandbox") }
    try FileManager.default.createDirectory(
      at: root.appendingPathComponent("snapshots"), withIntermediateDirectories: true)
    let archive = root.appendingPathComponent("snapshots/\(id).tar")
    let result = try await ProcessRunner.run("/usr/bin/tar", ["-cf", archive.path, "-C", sandbox.directory.path, "."])
    guard result.succeeded else { throw SandboxError.failed("tar: \(result.combinedText)") }
    let record = SnapshotRecord(
      id: id, sessionID: sessionID, sandboxID: sandbox.id, imageID: sandbox.image.id,
      repository: sandbox.repository.description, imageCommit: sandbox.image.commit, commit: sandbox.image.commit,
      branch: branch, createdAt: Date(), sizeBytes: 0, durationMilliseconds: 0)
    try JSONCoding.encoder.encode(record).write(to: root.appendingPathComponent("snapshots/\(id).json"))
    return record
  }

  func snapshotRecord(_ id: String) -> SnapshotRecord? {
    guard let data = FileManager.default.contents(atPath: root.appendingPathComponent("snapshots/\(id).json").path)
    else { return nil }
    return try? JSONCoding.decoder.decode(SnapshotRecord.self, from: data)
  }

  func snapshots(session sessionID: String) -> [SnapshotRecord] {
    let directory = root.appendingPathComponent("snapshots")
    let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    return files.filter { $0.hasSuffix(".json") }.compactMap { snapshotRecord(String($0.dropLast(5))) }
      .filter { $0.sessionID == sessionID }.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
  }

  func removeSnapshot(_ id: String) {
    for suffix in ["json", "tar"] {
      try? FileManager.default.removeItem(at: root.appendingPathComponent("snapshots/\(id).\(suffix)"))
    }
  }

  func restoreSandbox(from snapshot: SnapshotRecord, limits: SandboxLimits?) async throws -> any SandboxInstance {
    let id = Identifier.make(.sandbox)
    let directory = root.appendingPathComponent("sandboxes/\(id)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let result = try await ProcessRunner.run(
      "/usr/bin/tar", ["-xf", root.appendingPathComponent("snapshots/\(snapshot.id).tar").path, "-C", directory.path])
    guard result.succeeded else { throw SandboxError.failed("tar: \(result.combinedText)") }
    let image = Image(
      id: snapshot.imageID, repository: snapshot.repository, commit: snapshot.commit, nonce: "directory",
      builtAt: Date())
    return DirectorySandbox(
      id: id, repository: try RepositoryName(snapshot.repository), image: image, directory: directory, driver: self)
  }
}

/// A sandbox of ``DirectoryDriver``.
final class DirectorySandbox: SandboxInstance {
  let id: String
  let repository: RepositoryName
  let image: Image
  let directory: URL
  let driver: DirectoryDriver
  private let alive = Mutex(true)

  init(id: String, repository: RepositoryName, image: Image, directory: URL, driver: DirectoryDriver) {
    self.id = id
    self.repository = repository
    self.image = image
    self.directory = directory
    self.driver = driver
  }

  var isAlive: Bool { alive.withLock { $0 } }
  private var workspace: HostWorkspace { HostWorkspace(root: directory) }

  /// Runs `argv` as a host process in the sandbox's directory (no standard input).
  func start(_ argv: [String], environment: [String: String], directory: String) throws -> RunningCommand {
    let parts = try HostWorkspace.components(directory)
    let cwd = ([self.directory.path] + parts).joined(separator: "/")
    let (events, continuation) = AsyncStream.makeStream(of: CommandEvent.self)
    let task = Task {
      do {
        let result = try await ProcessRunner.run(
          "/bin/sh", ["-c", "cd \"$0\" && exec \"$@\"", cwd] + argv,
          environment: SandboxEnvironment.defaults.merging(environment) { $1 }
        ) { stream, data in continuation.yield(stream == .stdout ? .stdout(data) : .stderr(data)) }
        continuation.yield(.exited(code: result.exitCode, signal: 0))
      } catch {
        continuation.yield(.exited(code: 137, signal: 9))
      }
      continuation.finish()
    }
    return RunningCommand(
      events: events, input: { _ in throw SandboxError.unsupported("the directory driver has no standard input") },
      signal: { _ in task.cancel() })
  }

  func readFile(_ path: String, offset: UInt64, limit: UInt64) throws -> FileContent {
    try workspace.readFile(path, offset: offset, limit: limit)
  }

  func writeFile(_ path: String, content: Data, mode: UInt32?, createParents: Bool) throws -> UInt64 {
    try workspace.writeFile(path, content: content, mode: mode, createParents: createParents)
  }

  func listFiles(_ path: String, recursive: Bool, maxEntries: Int) throws -> FileListing {
    try workspace.listFiles(path, recursive: recursive, maxEntries: maxEntries)
  }

  func claimed(by sessionID: String, branch: String) {}

  func sync(branch: String, fallback: String) async throws -> String {
    if let release = driver.syncRelease { await release.wait() }
    let git = ["-C", directory.path]
    try await Git.run(git + ["fetch", "--quiet", "origin"])
    for name in [branch, fallback] where !name.isEmpty {
      if let commit = try? await Git.run(git + ["rev-parse", "--verify", "origin/\(name)^{commit}"]) {
        try await Git.run(git + ["checkout", "--quiet", "--detach", commit])
        return commit
      }
    }
    throw SandboxError.notFound("neither \(branch) nor \(fallback) exists")
  }

  func commitAndPush(
    branch: String, message: String, author: (name: String, email: String),
    committer: (name: String, email: String)
  ) async throws -> (commit: String, remote: String)? {
    let git = ["-C", directory.path]
    try await Git.run(git + ["add", "--all"])
    guard !(try await Git.run(git + ["status", "--porcelain"])).isEmpty else { return nil }
    try await Git.run(
      git + ["commit", "--quiet", "-m", message],
      environment: [
        "GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email, "GIT_COMMITTER_NAME": committer.name,
        "GIT_COMMITTER_EMAIL": committer.email,
      ])
    let commit = try await Git.run(git + ["rev-parse", "HEAD"])
    try await Git.run(git + ["push", "--quiet", "origin", "HEAD:refs/heads/\(branch)"])
    return (commit, driver.remote(repository).path)
  }

  func diff() async throws -> String {
    let index = directory.deletingLastPathComponent().appendingPathComponent("\(id).diff-index")
    defer { try? FileManager.default.removeItem(at: index) }
    let git = ["-C", directory.path]
    let environment = ["GIT_INDEX_FILE": index.path]
    try await Git.run(git + ["read-tree", "HEAD"], environment: environment)
    try await Git.run(git + ["add", "--all"], environment: environment)
    return try await Git.run(git + ["diff", "--cached", "--no-color", "--stat", "--patch"], environment: environment)
  }

  func terminate() async {
    alive.withLock { $0 = false }
    try? FileManager.default.removeItem(at: directory)
  }
}

/// Opens once; everyone waiting then continues.
final class Gate: Sendable {
  private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

  func open() {
    let waiters = state.withLock { state in
      state.open = true
      defer { state.waiters = [] }
      return state.waiters
    }
    for waiter in waiters { waiter.resume() }
  }

  func wait() async {
    await withCheckedContinuation { continuation in
      let now = state.withLock { state in
        if state.open { return true }
        state.waiters.append(continuation)
        return false
      }
      if now { continuation.resume() }
    }
  }
}
