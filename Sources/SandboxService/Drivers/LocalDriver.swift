import Foundation
import InspectKit
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// An image: a repository's files at one commit (the read-only lower layer of its sandboxes),
/// plus metadata mounted read-only at `/inspect` inside them.
struct Image: Codable, Sendable {
  var id: String
  var repository: String
  var commit: String
  /// A random value written when the image was built (`/inspect/nonce` in the sandbox).
  var nonce: String
  var builtAt: Date
}

/// A sandbox: the image as overlayfs lower layer, its own writable upper layer, the processes
/// running in it (its init and whatever init started), and a host-side git directory (outside
/// the sandbox's reach) for commits and pushes.
struct Sandbox: Sendable {
  var id: String
  var image: Image
  var directory: URL
  var process: SandboxProcess
  var merged: URL { directory.appendingPathComponent("merged", isDirectory: true) }
  var gitDirectory: URL { directory.appendingPathComponent("git", isDirectory: true) }
}

/// The `local` driver: sandboxes on this machine with overlayfs, bubblewrap and cgroups.
///
/// Each sandbox is one long-lived bubblewrap with new pid, ipc, uts and network namespaces (only
/// `lo`), every capability dropped, the host's system directories read-only, `/workspace` the
/// sandbox's files, `/inspect` the image metadata (read-only), a private `/tmp`, and
/// `inspect-sandbox-init` as its pid 1, which starts every command (`SandboxProcess`). Its
/// processes share the sandbox's cgroups (memory, pids, cpu; `CgroupSupport`).
struct LocalDriver: Sendable {
  let paths: SandboxPaths
  let logger: Logger
  /// The `inspect-sandbox-init` binary mounted at `/init` in every sandbox.
  let initBinary: URL
  let cgroups: CgroupSupport
  /// Limits for sandboxes created without their own.
  var limits = SandboxLimits()

  init(paths: SandboxPaths, logger: Logger, initBinary: URL? = nil, cgroups: CgroupSupport? = nil) {
    self.paths = paths
    self.logger = logger
    self.initBinary = initBinary ?? Self.defaultInitBinary()
    self.cgroups = cgroups ?? .detect()
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

  /// The image of `repository` at the newest commit of `branch` (falling back to `fallback`
  /// when `branch` does not exist yet), built now if no image of that commit exists.
  func image(for repository: RepositoryName, branch: String, fallback: String) async throws -> Image {
    let mirror = try await refreshMirror(repository)
    let commit: String
    if let found = try? await Git.run([
      "--git-dir", mirror.path, "rev-parse", "--verify", "refs/heads/\(branch)^{commit}",
    ]) {
      commit = found
    } else {
      commit = try await Git.run(["--git-dir", mirror.path, "rev-parse", "--verify", "refs/heads/\(fallback)^{commit}"])
    }
    if let existing = try existingImage(repository: repository, commit: commit) { return existing }
    return try await buildImage(repository: repository, commit: commit, mirror: mirror)
  }

  /// Clones the repository's remote as a bare mirror, or fetches into it.
  func refreshMirror(_ repository: RepositoryName) async throws -> URL {
    let remote = try paths.remote(repository)
    let mirror = paths.mirror(repository)
    if FileManager.default.fileExists(atPath: mirror.appendingPathComponent("HEAD").path) {
      try await Git.run([
        "--git-dir", mirror.path, "fetch", "--prune", "--quiet", remote.path, "+refs/heads/*:refs/heads/*",
      ])
    } else {
      try FileManager.default.createDirectory(at: mirror.deletingLastPathComponent(), withIntermediateDirectories: true)
      try await Git.run(["clone", "--mirror", "--quiet", remote.path, mirror.path])
    }
    return mirror
  }

  private func existingImage(repository: RepositoryName, commit: String) throws -> Image? {
    guard let files = try? FileManager.default.contentsOfDirectory(atPath: paths.images.path) else { return nil }
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    for file in files where file.hasSuffix(".json") {
      guard let data = FileManager.default.contents(atPath: paths.images.appendingPathComponent(file).path),
        let image = try? decoder.decode(Image.self, from: data)
      else { continue }
      if image.repository == repository.description, image.commit == commit { return image }
    }
    return nil
  }

  private func buildImage(repository: RepositoryName, commit: String, mirror: URL) async throws -> Image {
    let image = Image(
      id: Identifier.make(.image), repository: repository.description, commit: commit,
      nonce: (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined(), builtAt: Date())
    let directory = paths.image(image.id)
    let workspace = directory.appendingPathComponent("workspace", isDirectory: true)
    let meta = directory.appendingPathComponent("meta", isDirectory: true)
    try FileManager.default.createDirectory(at: workspace, withIntermediateDirectories: true)
    try FileManager.default.createDirectory(at: meta, withIntermediateDirectories: true)
    let extract = try await ProcessRunner.run(
      "/bin/sh",
      [
        "-c", "git --git-dir=\"$0\" archive --format=tar \"$1\" | tar -x -C \"$2\"", mirror.path, commit,
        workspace.path,
      ],
      environment: ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent"])
    guard extract.succeeded else {
      throw SandboxError.failed("building the image of \(repository) at \(commit) failed: \(extract.combinedText)")
    }
    try Data((image.nonce + "\n").utf8).write(to: meta.appendingPathComponent("nonce"))
    let encoder = JSONEncoder()
    encoder.dateEncodingStrategy = .iso8601
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(image).write(to: meta.appendingPathComponent("image.json"))
    try encoder.encode(image).write(to: paths.imageMetadata(image.id), options: .atomic)
    logger.info(
      "built image", metadata: ["image.id": "\(image.id)", "repository": "\(repository)", "commit": "\(commit)"])
    return image
  }

  // MARK: - Sandboxes

  /// Mounts a new sandbox over `image` and starts its init in its own cgroups.
  func createSandbox(
    from image: Image, repository: RepositoryName, limits: SandboxLimits? = nil
  ) async throws -> Sandbox {
    let id = Identifier.make(.sandbox)
    let directory = paths.sandbox(id)
    let merged = directory.appendingPathComponent("merged", isDirectory: true)
    for name in ["upper", "work", "merged"] {
      try FileManager.default.createDirectory(
        at: directory.appendingPathComponent(name, isDirectory: true), withIntermediateDirectories: true)
    }
    let lower = paths.image(image.id).appendingPathComponent("workspace").path
    let options =
      "lowerdir=\(lower),upperdir=\(directory.appendingPathComponent("upper").path),workdir=\(directory.appendingPathComponent("work").path)"
    guard mount("overlay", merged.path, "overlay", 0, options) == 0 else {
      let reason = String(cString: strerror(errno))
      try? FileManager.default.removeItem(at: directory)
      throw SandboxError.failed("mounting the sandbox's overlay failed: \(reason)")
    }
    do {
      let cgroup = try cgroups.create(id, limits: limits ?? self.limits)
      do {
        let process = try await SandboxProcess.start(
          workspace: merged, meta: paths.image(image.id).appendingPathComponent("meta"), initBinary: initBinary,
          cgroup: cgroup, log: directory.appendingPathComponent("bwrap.log"), label: id)
        return Sandbox(id: id, image: image, directory: directory, process: process)
      } catch {
        cgroup.remove()
        throw error
      }
    } catch {
      _ = umount2(merged.path, 0)
      try? FileManager.default.removeItem(at: directory)
      throw error
    }
  }

  /// Runs `command` with `/bin/sh -c` inside the sandbox.
  func exec(
    _ sandbox: Sandbox, command: String, timeout: Duration,
    onOutput: (@Sendable (_ isError: Bool, Data) -> Void)? = nil
  ) async throws -> CommandResult {
    try await sandbox.process.run(["/bin/sh", "-c", command], timeout: timeout, onOutput: onOutput)
  }

  /// The host-side git directory at the image's commit, sharing the mirror's objects (made on
  /// first use: most sandboxes never commit).
  private func prepareGitDirectory(_ sandbox: Sandbox, repository: RepositoryName) async throws {
    let git = sandbox.gitDirectory.path
    guard !FileManager.default.fileExists(atPath: sandbox.gitDirectory.appendingPathComponent("HEAD").path) else {
      return
    }
    let mirror = paths.mirror(repository)
    try await Git.run(["init", "--quiet", "--bare", git])
    try Data((mirror.appendingPathComponent("objects").path + "\n").utf8)
      .write(to: sandbox.gitDirectory.appendingPathComponent("objects/info/alternates"))
    try await Git.run(["--git-dir", git, "update-ref", "refs/heads/work", sandbox.image.commit])
    try await Git.run(["--git-dir", git, "symbolic-ref", "HEAD", "refs/heads/work"])
    try await Git.run(["--git-dir", git, "--work-tree", sandbox.merged.path, "read-tree", "HEAD"])
  }

  /// Commits everything in the sandbox (author and committer as given) and pushes it to the
  /// repository's remote as `branch`. Returns the commit, or nil when nothing changed.
  func commitAndPush(
    _ sandbox: Sandbox, repository: RepositoryName, branch: String, message: String,
    author: (name: String, email: String), committer: (name: String, email: String)
  ) async throws -> (commit: String, remote: String)? {
    try await prepareGitDirectory(sandbox, repository: repository)
    let base = ["--git-dir", sandbox.gitDirectory.path, "--work-tree", sandbox.merged.path]
    try await Git.run(base + ["add", "--all"])
    let status = try await Git.run(base + ["status", "--porcelain"])
    guard !status.isEmpty else { return nil }
    try await Git.run(
      base + ["commit", "--quiet", "--no-verify", "-m", message],
      environment: [
        "GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": committer.name, "GIT_COMMITTER_EMAIL": committer.email,
      ])
    let commit = try await Git.run(base + ["rev-parse", "HEAD"])
    let remote = try paths.remote(repository)
    try await Git.run([
      "--git-dir", sandbox.gitDirectory.path, "push", "--quiet", remote.path, "HEAD:refs/heads/\(branch)",
    ])
    return (commit, remote.path)
  }

  /// Kills every process of the sandbox, then unmounts it (in that order: an overlay still in use
  /// by a live process stays mounted whatever umount says) and removes its files.
  /// Runs to its end even when the calling task is cancelled (a stopped turn still cleans up).
  func terminate(_ sandbox: Sandbox) async {
    await Task { await sandbox.process.terminate() }.value
    if umount2(sandbox.merged.path, 0) != 0, errno != EINVAL {
      logger.warning(
        "unmounting a sandbox failed; detaching it",
        metadata: ["sandbox.id": "\(sandbox.id)", "error": "\(String(cString: strerror(errno)))"])
      _ = umount2(sandbox.merged.path, Int32(MNT_DETACH))
    }
    try? FileManager.default.removeItem(at: sandbox.directory)
  }
}
