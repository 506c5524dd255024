import CSandbox
import Dispatch
import Foundation
import InspectGitHub
import InspectKit
import InspectProtos
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// An image: a repository's files at one commit after its setup script ran (the read-only lower
/// layer of its sandboxes), plus metadata mounted read-only at `/inspect` inside them.
struct Image: Codable, Sendable, Equatable {
  enum State: String, Codable, Sendable { case building, ready, failed }

  var id: String
  var repository: String
  var commit: String
  /// A random value written when the image was built (`/inspect/nonce` in the sandbox).
  var nonce: String
  var builtAt: Date
  var branch = ""
  var state = State.ready
  /// Named build timings in milliseconds (`fetch`, `checkout`, `setup`, `finalize`).
  var timings: [String: Double] = [:]
  var sizeBytes: UInt64 = 0
  /// Whether `.inspect/setup.sh` ran.
  var setupRan = false
  /// Why the build failed, when it did.
  var error = ""
}

/// The `local` driver: sandboxes on this machine with overlayfs, bubblewrap and cgroups.
///
/// Each sandbox is one long-lived bubblewrap with new pid, ipc, uts and network namespaces (only
/// `lo`), every capability dropped, the host's system directories read-only, `/workspace` the
/// sandbox's files, `/inspect` the image metadata (read-only), a private `/tmp`, and
/// `inspect-sandbox-init` as its pid 1, which starts every command (`SandboxProcess`). Its
/// processes share the sandbox's cgroups (memory, pids, cpu; `CgroupSupport`).
struct LocalDriver: SandboxDriver {
  let name = "local"
  let node = ProcessInfo.processInfo.hostName
  let paths: SandboxPaths
  let logger: Logger
  /// The `inspect-sandbox-init` binary mounted at `/init` in every sandbox.
  let initBinary: URL
  let cgroups: CgroupSupport
  /// Limits for sandboxes created without their own.
  var limits = SandboxLimits()
  /// The watchdog of an image's `.inspect/setup.sh`.
  var setupTimeout: Duration = .seconds(1800)
  /// One git operation on a repository's mirror at a time (fetches would collide on its locks).
  let mirrorLocks = KeyedLock()
  /// Launchers already in their sandbox's cgroups (default limits), for the next creates.
  let reserve: LaunchReserve
  /// GitHub repositories, when a GitHub App is configured (else only `local/<name>` ones).
  var github: GitHubRemotes?

  /// `reserve` launchers are kept ready (in their cgroups) for the next sandboxes.
  init(
    paths: SandboxPaths, logger: Logger, initBinary: URL? = nil, cgroups: CgroupSupport? = nil, reserve: Int = 2
  ) {
    self.paths = paths
    self.logger = logger
    let initBinary = initBinary ?? Self.defaultInitBinary()
    let cgroups = cgroups ?? .detect()
    let limits = SandboxLimits()
    self.initBinary = initBinary
    self.cgroups = cgroups
    self.reserve = LaunchReserve(size: reserve) {
      try Self.prepareSlot(paths: paths, initBinary: initBinary, cgroups: cgroups, limits: limits)
    }
  }

  /// A new sandbox id, its directory, its cgroups with `limits` and a launcher inside them.
  static func prepareSlot(
    paths: SandboxPaths, initBinary: URL, cgroups: CgroupSupport, limits: SandboxLimits
  ) throws -> LaunchReserve.Slot {
    let id = Identifier.make(.sandbox)
    let directory = paths.sandbox(id)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    do {
      let cgroup = try cgroups.create(id, limits: limits)
      do {
        let launcher = try SandboxLauncher.spawn(
          initBinary: initBinary, log: directory.appendingPathComponent("bwrap.log"))
        do {
          try LocalSandboxState(id: id, cgroup: cgroup).write(to: directory)
          try cgroup.add(launcher.pid)
        } catch {
          Task { await launcher.abandon() }
          throw error
        }
        return LaunchReserve.Slot(id: id, directory: directory, cgroup: cgroup, launcher: launcher)
      } catch {
        cgroup.remove()
        throw error
      }
    } catch {
      try? FileManager.default.removeItem(at: directory)
      throw error
    }
  }

  /// `$INSPECT_SANDBOX_INIT`, else `inspect-sandbox-init` next to the running executable.
  static func defaultInitBinary() -> URL {
    if let path = ProcessInfo.processInfo.environment["INSPECT_SANDBOX_INIT"], !path.isEmpty {
      return URL(fileURLWithPath: path)
    }
    let executable =
      (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("inspect-sandbox-init")
  }

  // MARK: - Images

  /// The newest commit of `branch` in `mirror`, else of `fallback`; an empty name is the
  /// mirror's default branch (its HEAD).
  func newestCommit(in mirror: URL, branch: String, fallback: String) async throws -> String {
    func resolve(_ name: String) async throws -> String {
      try await Git.run([
        "--git-dir", mirror.path, "rev-parse", "--verify",
        name.isEmpty ? "HEAD^{commit}" : "refs/heads/\(name)^{commit}",
      ])
    }
    if let found = try? await resolve(branch) { return found }
    do {
      return try await resolve(fallback)
    } catch {
      throw SandboxError.notFound(
        "neither \(branch.isEmpty ? "the default branch" : branch) nor \(fallback.isEmpty ? "the default branch" : fallback) exists in \(mirror.path)"
      )
    }
  }

  /// Clones the repository's remote as a bare mirror, or fetches into it (one at a time per
  /// repository).
  func refreshMirror(_ repository: RepositoryName) async throws -> URL {
    let remote = try await self.remote(repository)
    let mirror = paths.mirror(repository)
    try await mirrorLocks.withLock(repository.description) {
      if FileManager.default.fileExists(atPath: mirror.appendingPathComponent("HEAD").path) {
        try await Git.run(
          ["--git-dir", mirror.path, "fetch", "--prune", "--quiet", remote.location, "+refs/heads/*:refs/heads/*"],
          environment: remote.environment)
      } else {
        try FileManager.default.createDirectory(
          at: mirror.deletingLastPathComponent(), withIntermediateDirectories: true)
        try await Git.run(
          ["clone", "--mirror", "--quiet", remote.location, mirror.path], environment: remote.environment)
        // A mirror clone records its remote; a local mirror must not point at GitHub (fetches
        // name the remote on each call, with that call's credential).
        try await Git.run(["--git-dir", mirror.path, "remote", "remove", "origin"])
      }
    }
    return mirror
  }

  /// Fetches the repository's mirror (cloning it the first time) and describes it. A fetch that
  /// fails because the repository is not there is NOT_FOUND; one that cannot reach the server
  /// is UNAVAILABLE.
  func mirror(_ repository: RepositoryName) async throws -> MirrorInfo {
    let mirror: URL
    do {
      mirror = try await refreshMirror(repository)
    } catch SandboxError.failed(let message) {
      throw GitFailure.isMissingRepository(message)
        ? SandboxError.notFound("repository \(repository) could not be fetched: \(message)")
        : GitFailure.isAuthentication(message)
          ? SandboxError.permissionDenied("the GitHub App may not read \(repository): \(message)")
          : SandboxError.unavailable("repository \(repository) could not be fetched: \(message)")
    }
    let head = try await Git.run(["--git-dir", mirror.path, "symbolic-ref", "--short", "HEAD"])
      .trimmingCharacters(in: .whitespacesAndNewlines)
    let commit = try? await Git.run(["--git-dir", mirror.path, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
    let branches = try await Git.run(["--git-dir", mirror.path, "for-each-ref", "--format=%(refname)", "refs/heads/"])
      .split(separator: "\n").count
    return MirrorInfo(
      defaultBranch: head, headCommit: commit?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "",
      branches: branches)
  }

  /// Fetches the mirror, then compares `head` with `base` in it (``BranchComparison``).
  func compareBranches(
    _ repository: RepositoryName, base: String, head: String, maxPatchBytes: Int
  ) async throws -> Inspect_Common_V1_BranchDiff {
    try await BranchComparison.validate(branch: base, role: "base")
    try await BranchComparison.validate(branch: head, role: "head")
    _ = try await mirror(repository)
    let gitDirectory = paths.mirror(repository)
    // The commits are resolved under the mirror's lock; diffing them (slow for big changes)
    // needs no lock, as commits never change.
    let tips = try await mirrorLocks.withLock(repository.description) {
      try await BranchComparison.tips(gitDirectory: gitDirectory, repository: repository, base: base, head: head)
    }
    return try await BranchComparison.diff(gitDirectory: gitDirectory, tips: tips, maxPatchBytes: maxPatchBytes)
  }

  /// The repository's remote: `local/<name>` in `remotes/`, other owners on GitHub through the
  /// app (when one is configured).
  func remote(_ repository: RepositoryName) async throws -> GitRemote {
    if repository.owner == "local" { return .local(try paths.remote(repository)) }
    guard let github else {
      throw SandboxError.preconditionFailed(
        "repository \(repository) is on GitHub, and no GitHub App is configured: set INSPECT_GITHUB_APP_ID and "
          + "INSPECT_GITHUB_APP_PRIVATE_KEY_FILE (only local/<name> repositories work without one)")
    }
    return try await github.remote(repository)
  }

  // MARK: - Sandboxes

  /// Mounts a new sandbox over `image` and starts its init in its own cgroups.
  func createSandbox(
    from image: Image, repository: RepositoryName, limits: SandboxLimits? = nil
  ) async throws -> any SandboxInstance {
    try await makeSandbox(image: image, repository: repository, limits: limits, head: image.commit, layer: nil)
  }

  /// Mounts `image` with a writable layer (empty, or unpacked from `layer`) and starts init.
  private func makeSandbox(
    image: Image, repository: RepositoryName, limits: SandboxLimits?, head: String, layer: URL?
  ) async throws -> LocalSandbox {
    let clock = ContinuousClock()
    var mark = clock.now
    var timings: [String: Duration] = [:]
    func lap(_ name: String) {
      let now = clock.now
      timings[name] = now - mark
      mark = now
    }
    // A reserved launcher when the limits are the defaults; otherwise one made now.
    let slot =
      limits == nil || limits == self.limits
      ? try reserve.take()
      : try Self.prepareSlot(paths: paths, initBinary: initBinary, cgroups: cgroups, limits: limits ?? self.limits)
    lap("launcher")
    let (id, directory, cgroup) = (slot.id, slot.directory, slot.cgroup)
    let upper = directory.appendingPathComponent("upper", isDirectory: true)
    let merged = directory.appendingPathComponent("merged", isDirectory: true)
    func giveUp() async {
      await LaunchReserve.discard(slot)
    }
    do {
      for name in ["upper", "work", "merged"] {
        try FileManager.default.createDirectory(
          at: directory.appendingPathComponent(name, isDirectory: true), withIntermediateDirectories: true)
      }
      if let layer { try await LayerArchive.extract(layer, into: upper) }
    } catch {
      await giveUp()
      throw error
    }
    lap(layer == nil ? "directories" : "layer")
    let lower = paths.image(image.id).appendingPathComponent("workspace").path
    let options =
      "lowerdir=\(lower),upperdir=\(upper.path),workdir=\(directory.appendingPathComponent("work").path)"
    guard mount("overlay", merged.path, "overlay", 0, options) == 0 else {
      let reason = String(cString: strerror(errno))
      await giveUp()
      throw SandboxError.failed("mounting the sandbox's overlay failed: \(reason)")
    }
    lap("mount")
    do {
      // On failure the launcher is already killed and reaped.
      let process = try await SandboxProcess.start(
        launcher: slot.launcher, workspace: merged, meta: paths.image(image.id).appendingPathComponent("meta"),
        initBinary: initBinary, cgroup: cgroup, log: directory.appendingPathComponent("bwrap.log"), label: id,
        timings: &timings)
      lap("bubblewrap")
      logger.debug(
        "started a sandbox",
        metadata: [
          "sandbox.id": "\(id)",
          "timings": "\(timings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.milliseconds)ms" })",
        ])
      let state = LocalSandboxState(
        id: id, cgroup: cgroup, repository: repository.description, imageID: image.id, imageCommit: image.commit,
        head: head)
      // Best effort: without it a crash would leave recovery less to go on, nothing worse.
      try? state.write(to: directory)
      return LocalSandbox(
        id: id, repository: repository, image: image, directory: directory, process: process, driver: self,
        state: state)
    } catch {
      cgroup.remove()
      _ = umount2(merged.path, 0)
      try? FileManager.default.removeItem(at: directory)
      throw error
    }
  }

  // MARK: - Snapshots

  /// Archives the sandbox's writable layer (whiteouts and opaque directories included) as
  /// `snapshots/<id>.tar.zst`, then writes its metadata; a snapshot without metadata is
  /// incomplete and never restored.
  func snapshot(
    _ sandbox: any SandboxInstance, id: String, sessionID: String, branch: String
  ) async throws -> SnapshotRecord {
    guard let sandbox = sandbox as? LocalSandbox else {
      throw SandboxError.invalid("sandbox \(sandbox.id) does not belong to the local driver")
    }
    let clock = ContinuousClock()
    let started = clock.now
    try FileManager.default.createDirectory(at: paths.snapshots, withIntermediateDirectories: true)
    let archive = paths.snapshotArchive(id)
    let size = try await LayerArchive.create(from: sandbox.upper, to: archive)
    let record = SnapshotRecord(
      id: id, sessionID: sessionID, sandboxID: sandbox.id, imageID: sandbox.image.id,
      repository: sandbox.repository.description, imageCommit: sandbox.image.commit, commit: sandbox.head,
      branch: branch, createdAt: Date(),
      sizeBytes: size, durationMilliseconds: (clock.now - started).milliseconds)
    try JSONCoding.encoder.encode(record).write(to: paths.snapshotMetadata(id), options: .atomic)
    return record
  }

  func snapshotRecord(_ id: String) -> SnapshotRecord? {
    // Ids become paths: only well-formed ones, and a record must name a well-formed image.
    guard Identifier.isValid(id, kind: .snapshot) else { return nil }
    guard FileManager.default.fileExists(atPath: paths.snapshotArchive(id).path),
      let data = FileManager.default.contents(atPath: paths.snapshotMetadata(id).path)
    else { return nil }
    guard let record = try? JSONCoding.decoder.decode(SnapshotRecord.self, from: data), record.id == id,
      Identifier.isValid(record.imageID, kind: .image)
    else { return nil }
    return record
  }

  func snapshots(session sessionID: String) -> [SnapshotRecord] {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: paths.snapshots.path)) ?? []
    return files.filter { $0.hasSuffix(".json") }
      .compactMap { snapshotRecord(String($0.dropLast(".json".count))) }
      .filter { $0.sessionID == sessionID }
      .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
  }

  /// The metadata goes first: without it the archive is an incomplete snapshot.
  func removeSnapshot(_ id: String) {
    guard Identifier.isValid(id, kind: .snapshot) else { return }
    try? FileManager.default.removeItem(at: paths.snapshotMetadata(id))
    try? FileManager.default.removeItem(at: paths.snapshotArchive(id))
  }

  /// The snapshot's image plus its layer. An image that was removed is built again at the
  /// snapshot's image commit (the layer only holds the differences from that tree).
  func restoreSandbox(from snapshot: SnapshotRecord, limits: SandboxLimits?) async throws -> any SandboxInstance {
    let repository = try RepositoryName(snapshot.repository)
    let image: Image
    if let data = FileManager.default.contents(atPath: paths.imageMetadata(snapshot.imageID).path),
      let found = try? JSONCoding.decoder.decode(Image.self, from: data)
    {
      image = found
    } else {
      guard let commit = snapshot.imageCommit else {
        throw SandboxError.notFound(
          "the image \(snapshot.imageID) of snapshot \(snapshot.id) is gone and the snapshot does not say its commit")
      }
      logger.notice(
        "the image of a snapshot is gone; building it again",
        metadata: ["snapshot.id": "\(snapshot.id)", "image.id": "\(snapshot.imageID)"])
      image = try await buildImage(repository: repository, commit: commit, mirror: try await refreshMirror(repository))
    }
    return try await makeSandbox(
      image: image, repository: repository, limits: limits, head: snapshot.commit,
      layer: paths.snapshotArchive(snapshot.id))
  }
}

/// A sandbox of the local driver: the image as overlayfs lower layer, its own writable upper
/// layer, its processes (init and whatever init started), and a host-side git directory (outside
/// the sandbox's reach) for syncs, commits and pushes.
final class LocalSandbox: SandboxInstance {
  let id: String
  let repository: RepositoryName
  let image: Image
  let directory: URL
  let process: SandboxProcess
  let driver: LocalDriver
  /// Persisted in `state.json` whenever it changes (for crash recovery).
  private let state: Mutex<LocalSandboxState>
  private let stateWriter = DispatchQueue(label: "inspect.sandbox.state")

  init(
    id: String, repository: RepositoryName, image: Image, directory: URL, process: SandboxProcess,
    driver: LocalDriver, state: LocalSandboxState
  ) {
    self.id = id
    self.repository = repository
    self.image = image
    self.directory = directory
    self.process = process
    self.driver = driver
    self.state = Mutex(state)
  }

  /// Changes the state and writes it down in the background, in order (off the claim's path;
  /// best effort: a crash just then leaves recovery knowing a little less).
  private func update(_ change: (inout LocalSandboxState) -> Void) {
    let snapshot = state.withLock { state in
      change(&state)
      return state
    }
    let directory = self.directory
    stateWriter.async { try? snapshot.write(to: directory) }
  }

  /// Waits until every state change is written.
  func flushState() { stateWriter.sync {} }

  func claimed(by sessionID: String, branch: String) {
    update {
      $0.sessionID = sessionID
      $0.branch = branch
    }
  }

  var merged: URL { directory.appendingPathComponent("merged", isDirectory: true) }
  var upper: URL { directory.appendingPathComponent("upper", isDirectory: true) }
  var gitDirectory: URL { directory.appendingPathComponent("git", isDirectory: true) }
  var workspace: HostWorkspace { HostWorkspace(root: merged) }
  /// The commit the workspace is based on (the image's, then the last sync's or commit's).
  var head: String { state.withLock { $0.head } }
  var isAlive: Bool { process.isAlive }

  func start(_ argv: [String], environment: [String: String], directory: String) throws -> RunningCommand {
    let parts = try HostWorkspace.components(directory)
    var input: [Int32] = [-1, -1]
    guard csandbox_pipe(&input) == 0 else {
      throw SandboxError.failed("cannot create a pipe: \(String(cString: strerror(errno)))")
    }
    let (id, events) = process.start(
      argv, environment: environment, directory: "/workspace" + parts.map { "/" + $0 }.joined(), stdin: input[0])
    Glibc.close(input[0])
    let writer = PipeWriter(fd: input[1])
    let connection = process.connection
    return RunningCommand(
      events: events, input: { data in try await writer.write(data) }, signal: { connection.signal(id, $0) },
      release: { writer.abandon() })
  }

  func readFile(_ path: String, offset: UInt64, limit: UInt64) throws -> FileContent {
    try workspace.readFile(path, offset: offset, limit: limit)
  }

  @discardableResult
  func writeFile(_ path: String, content: Data, mode: UInt32?, createParents: Bool) throws -> UInt64 {
    try workspace.writeFile(path, content: content, mode: mode, createParents: createParents)
  }

  func listFiles(_ path: String, recursive: Bool, maxEntries: Int) throws -> FileListing {
    try workspace.listFiles(path, recursive: recursive, maxEntries: maxEntries)
  }

  /// Fetches the mirror and moves the workspace from its head to the branch's newest commit.
  /// Without local work in the way this is a two-tree `read-tree -m -u` (uncommitted changes are
  /// carried over). Commits a failed push left behind, and uncommitted changes to files the
  /// branch changed too, are replayed onto the branch's commit instead (a rebase; uncommitted
  /// changes stay uncommitted); when they conflict, nothing moves and the error says so.
  func sync(branch: String, fallback: String) async throws -> String {
    let mirror = try await driver.refreshMirror(repository)
    let commit = try await driver.newestCommit(in: mirror, branch: branch, fallback: fallback)
    guard commit != head else { return commit }
    try await prepareGitDirectory()
    let base = ["--git-dir", gitDirectory.path, "--work-tree", merged.path]
    _ = try? await Git.run(base + ["update-index", "-q", "--refresh"])
    let local = try await Git.run(base + ["rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
    if local == head, (try? await Git.run(base + ["read-tree", "-m", "-u", "HEAD", commit])) != nil {
      try await Git.run(["--git-dir", gitDirectory.path, "update-ref", "refs/heads/work", commit])
    } else {
      try await replay(onto: commit, branch: branch)
    }
    update { $0.head = commit }
    return commit
  }

  /// Rebases what this sandbox has beyond its head (unpushed commits, then its uncommitted
  /// changes as a temporary commit, undone afterwards) onto `commit`; a conflict restores the
  /// workspace and throws ``SandboxError/aborted(_:)``.
  private func replay(onto commit: String, branch: String) async throws {
    let base = ["--git-dir", gitDirectory.path, "--work-tree", merged.path]
    let identity = [
      "GIT_AUTHOR_NAME": "Inspect", "GIT_AUTHOR_EMAIL": "bot@inspect.local", "GIT_COMMITTER_NAME": "Inspect",
      "GIT_COMMITTER_EMAIL": "bot@inspect.local",
    ]
    let before = try await Git.run(base + ["rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
    try await Git.run(base + ["add", "--all"])
    let dirty = !(try await Git.run(base + ["status", "--porcelain"])).isEmpty
    if dirty {
      try await Git.run(
        base + ["commit", "--quiet", "--no-verify", "-m", "inspect: uncommitted changes"], environment: identity)
    }
    do {
      try await Git.run(base + ["rebase", "--quiet", "--onto", commit, head], environment: identity)
    } catch {
      _ = try? await Git.run(base + ["rebase", "--abort"])
      _ = try? await Git.run(base + ["reset", "--quiet", "--mixed", before])
      throw SandboxError.aborted(
        "\(branch) moved on (to \(commit.prefix(12))) and this sandbox's unpushed or uncommitted work conflicts "
          + "with it (\(error)); the workspace was left as it was: resolve the conflict with the branch's changes")
    }
    if dirty { try await Git.run(base + ["reset", "--quiet", "--mixed", "HEAD~1"]) }
  }

  /// The host-side git directory at the sandbox's head, sharing the mirror's objects (made on
  /// first use: most sandboxes never commit).
  private func prepareGitDirectory() async throws {
    let git = gitDirectory.path
    guard !FileManager.default.fileExists(atPath: gitDirectory.appendingPathComponent("HEAD").path) else { return }
    var mirror = driver.paths.mirror(repository)
    let head = self.head
    if (try? await Git.run(["--git-dir", mirror.path, "cat-file", "-e", "\(head)^{commit}"])) == nil {
      mirror = try await driver.refreshMirror(repository)
    }
    try await Git.run(["init", "--quiet", "--bare", git])
    try Data((mirror.appendingPathComponent("objects").path + "\n").utf8)
      .write(to: gitDirectory.appendingPathComponent("objects/info/alternates"))
    try await Git.run(["--git-dir", git, "update-ref", "refs/heads/work", head])
    try await Git.run(["--git-dir", git, "symbolic-ref", "HEAD", "refs/heads/work"])
    try await Git.run(["--git-dir", git, "--work-tree", merged.path, "read-tree", "HEAD"])
  }

  func commitAndPush(
    branch: String, message: String, author: (name: String, email: String),
    committer: (name: String, email: String)
  ) async throws -> (commit: String, remote: String)? {
    try await prepareGitDirectory()
    let base = ["--git-dir", gitDirectory.path, "--work-tree", merged.path]
    try await Git.run(base + ["add", "--all"])
    let status = try await Git.run(base + ["status", "--porcelain"])
    if status.isEmpty {
      // Nothing new; but commits a failed push left behind still go out.
      guard try await Git.run(base + ["rev-parse", "HEAD"]) != head else { return nil }
    } else {
      try await Git.run(
        base + ["commit", "--quiet", "--no-verify", "-m", message],
        environment: [
          "GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email,
          "GIT_COMMITTER_NAME": committer.name, "GIT_COMMITTER_EMAIL": committer.email,
        ])
    }
    let pushed = try await push(branch: branch, committer: committer)
    update { $0.head = pushed.commit }
    return pushed
  }

  /// Pushes HEAD as `branch`. A push the remote rejects because someone else pushed to the
  /// branch meanwhile is tried once more after fetching the branch and rebasing onto it; a
  /// credential the remote refuses is renewed once (an installation token revoked early).
  private func push(
    branch: String, committer: (name: String, email: String)
  ) async throws -> (commit: String, remote: String) {
    var remote = try await driver.remote(repository)
    var (rebased, renewed) = (false, false)
    while true {
      do {
        try await Git.run(
          ["--git-dir", gitDirectory.path, "push", "--quiet", remote.location, "HEAD:refs/heads/\(branch)"],
          environment: remote.environment)
        return (try await Git.run(["--git-dir", gitDirectory.path, "rev-parse", "HEAD"]), remote.location)
      } catch SandboxError.failed(let message) where !rebased && GitFailure.isNotFastForward(message) {
        rebased = true
        try await rebase(onto: branch, from: remote, committer: committer)
      } catch SandboxError.failed(let message)
        where !renewed && GitFailure.isAuthentication(message) && repository.owner != "local"
      {
        renewed = true
        await driver.github?.app.invalidate(repository: repository.description)
        remote = try await driver.remote(repository)
      } catch SandboxError.failed(let message) where GitFailure.isUnreachable(message) {
        throw SandboxError.unavailable("the remote of \(repository) could not be reached: \(message)")
      } catch SandboxError.failed(let message) where GitFailure.isMissingRepository(message) {
        throw SandboxError.notFound("the remote has no repository \(repository) (or hides it): \(message)")
      } catch SandboxError.failed(let message) where GitFailure.isAuthentication(message) {
        throw SandboxError.permissionDenied(
          "the remote refused "
            + (repository.owner == "local"
              ? "the push to \(repository)"
              : "the GitHub App's token for \(repository)\(renewed ? " (a fresh one too)" : ""): the app may lack the "
                + "Contents: write permission, or be suspended or uninstalled")
            + ": \(message)")
      }
    }
  }

  /// Fetches `branch` from `remote` and rebases this sandbox's commits onto it (the workspace
  /// follows); a conflict aborts the rebase, leaving the workspace as it was.
  private func rebase(
    onto branch: String, from remote: GitRemote, committer: (name: String, email: String)
  ) async throws {
    let theirs = "refs/inspect/remote/\(branch)"
    try await Git.run(
      ["--git-dir", gitDirectory.path, "fetch", "--quiet", remote.location, "+refs/heads/\(branch):\(theirs)"],
      environment: remote.environment)
    let base = ["--git-dir", gitDirectory.path, "--work-tree", merged.path]
    do {
      try await Git.run(
        base + ["rebase", "--quiet", theirs],
        environment: ["GIT_COMMITTER_NAME": committer.name, "GIT_COMMITTER_EMAIL": committer.email])
    } catch {
      _ = try? await Git.run(base + ["rebase", "--abort"])
      throw SandboxError.aborted(
        "the push to \(branch) was rejected because someone else pushed to it meanwhile, and this turn's commits "
          + "do not rebase cleanly onto theirs (\(error)); pull their changes and resolve the conflict")
    }
  }

  /// `git diff` of everything in the workspace against HEAD, through a throwaway index (the
  /// sandbox's own index is left as it was), so new files show too.
  func diff() async throws -> String {
    try await prepareGitDirectory()
    let index = directory.appendingPathComponent("diff.index")
    defer { try? FileManager.default.removeItem(at: index) }
    let base = ["--git-dir", gitDirectory.path, "--work-tree", merged.path]
    let environment = ["GIT_INDEX_FILE": index.path]
    try await Git.run(base + ["read-tree", "HEAD"], environment: environment)
    try await Git.run(base + ["add", "--all"], environment: environment)
    return try await Git.run(
      base + ["diff", "--cached", "--no-color", "--no-ext-diff", "--stat", "--patch"], environment: environment)
  }

  /// Kills every process of the sandbox, then unmounts it (in that order: an overlay still in use
  /// by a live process stays mounted whatever umount says) and removes its files.
  func terminate() async {
    let sandbox = self
    await Task {
      await sandbox.process.terminate()
      sandbox.flushState()
      if umount2(sandbox.merged.path, 0) != 0, errno != EINVAL {
        sandbox.driver.logger.warning(
          "unmounting a sandbox failed; detaching it",
          metadata: ["sandbox.id": "\(sandbox.id)", "error": "\(String(cString: strerror(errno)))"])
        _ = umount2(sandbox.merged.path, Int32(MNT_DETACH))
      }
      try? FileManager.default.removeItem(at: sandbox.directory)
    }.value
  }
}

/// Writes to a command's standard input off the cooperative pool, in order; closing (nil)
/// gives the command end of file. The pipe is non-blocking: a write waits for room in 50 ms
/// polls and gives up once the writer is abandoned (the command ended, but a background process
/// still holds the pipe). The descriptor is closed when the writer goes away.
final class PipeWriter: Sendable {
  private let fd: Int32
  private let queue = DispatchQueue(label: "inspect.sandbox.stdin")
  private let closed = Mutex(false)
  private let abandoned = Mutex(false)

  init(fd: Int32) {
    self.fd = fd
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
  }

  /// Stops every write in progress or to come.
  func abandon() { abandoned.withLock { $0 = true } }

  func write(_ data: Data?) async throws {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
      queue.async {
        guard let data else {
          self.closeOnce()
          continuation.resume()
          return
        }
        guard !self.closed.withLock({ $0 }), !self.abandoned.withLock({ $0 }) else {
          continuation.resume(throwing: SandboxError.preconditionFailed("standard input is closed"))
          return
        }
        var done = 0
        let failure: Int32? = data.withUnsafeBytes { buffer in
          while done < buffer.count {
            let written = Glibc.write(self.fd, buffer.baseAddress! + done, buffer.count - done)
            if written > 0 {
              done += written
              continue
            }
            if written < 0, errno == EINTR { continue }
            guard written < 0, errno == EAGAIN else { return errno }
            if self.abandoned.withLock({ $0 }) { return EPIPE }
            var wait = pollfd(fd: self.fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&wait, 1, 50)
          }
          return nil
        }
        if let failure {
          continuation.resume(
            throwing: SandboxError.preconditionFailed(
              "the command's standard input is closed (\(String(cString: strerror(failure))))"))
        } else {
          continuation.resume()
        }
      }
    }
  }

  private func closeOnce() {
    let wasOpen = closed.withLock { closed in
      defer { closed = true }
      return !closed
    }
    if wasOpen { Glibc.close(fd) }
  }

  deinit { closeOnce() }
}

/// What a failed git command's message says.
enum GitFailure {
  /// The remote refused a push that is not a fast-forward (someone else pushed first).
  static func isNotFastForward(_ message: String) -> Bool {
    message.contains("[rejected]") && (message.contains("fetch first") || message.contains("non-fast-forward"))
  }

  /// The remote could not be reached (name resolution, connection, timeouts, a 5xx answer).
  static func isUnreachable(_ message: String) -> Bool {
    [
      "Could not resolve host", "Failed to connect", "Couldn't connect", "Connection refused", "Connection timed out",
      "Operation timed out", "returned error: 5",
    ].contains { message.contains($0) }
  }

  /// The remote has no such repository (or hides it from this credential, as GitHub does).
  static func isMissingRepository(_ message: String) -> Bool {
    ["Repository not found", "does not appear to be a git repository", "returned error: 404", "not found"].contains {
      message.contains($0)
    }
  }

  /// The remote refused the credential.
  static func isAuthentication(_ message: String) -> Bool {
    ["Authentication failed", "returned error: 401", "returned error: 403", "could not read Username"].contains {
      message.contains($0)
    }
  }
}
