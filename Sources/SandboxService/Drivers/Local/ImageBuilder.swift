import Foundation
import InspectKit

/// Images of the local driver: `images/<id>/workspace` (the repository at one commit, after
/// `.inspect/setup.sh`), `images/<id>/meta/{nonce,image.json}`, `images/<id>/build.log`, and
/// `images/<id>.json` (the record `ListImages` reads; written first as BUILDING, last as READY
/// or FAILED).
extension LocalDriver {
  /// The newest READY image of `repository` at the newest commit of `branch` (else `fallback`;
  /// empty: the default branch), built now when there is none.
  func image(for repository: RepositoryName, branch: String, fallback: String) async throws -> Image {
    let mirror = try await refreshMirror(repository)
    let commit = try await newestCommit(in: mirror, branch: branch, fallback: fallback)
    if let existing = images(repository: repository.description).first(where: {
      $0.state == .ready && $0.commit == commit
    }) {
      return existing
    }
    let image = try await buildImage(repository: repository, commit: commit, branch: branch, mirror: mirror)
    guard image.state == .ready else {
      throw SandboxError.failed("the image of \(repository) at \(commit) could not be built: \(image.error)")
    }
    return image
  }

  /// Builds a new image of `branch` (empty: the default branch) unless its newest commit already
  /// has a READY image and `force` is false. A failed setup gives an image in state FAILED (and
  /// the previous images stay); a failure to fetch or check out throws.
  func buildImage(
    _ repository: RepositoryName, branch: String, force: Bool, progress: @escaping @Sendable (ImageBuildEvent) -> Void
  ) async throws -> (image: Image, unchanged: Bool) {
    let clock = ContinuousClock()
    let started = clock.now
    progress(.step(.fetch, "fetching \(repository)"))
    let mirror = try await refreshMirror(repository)
    let fetched = clock.now - started
    let name = branch.isEmpty ? try await defaultBranch(of: mirror) : branch
    let commit: String
    do {
      commit = try await Git.run(["--git-dir", mirror.path, "rev-parse", "--verify", "refs/heads/\(name)^{commit}"])
    } catch {
      throw SandboxError.notFound("\(repository) has no branch \(name)")
    }
    if !force,
      let newest = images(repository: repository.description).first(where: { $0.state == .ready }),
      newest.commit == commit
    {
      progress(.step(.finalize, "\(name) is still at \(commit.prefix(12)): keeping \(newest.id)"))
      return (newest, true)
    }
    let image = try await buildImage(
      repository: repository, commit: commit, branch: name, mirror: mirror, fetch: fetched, progress: progress)
    return (image, false)
  }

  /// Checks out `commit`, runs `.inspect/setup.sh` when the repository has one, and seals the
  /// result.
  func buildImage(
    repository: RepositoryName, commit: String, branch: String = "", mirror: URL, fetch: Duration? = nil,
    progress: (@Sendable (ImageBuildEvent) -> Void)? = nil
  ) async throws -> Image {
    let clock = ContinuousClock()
    var image = Image(
      id: Identifier.make(.image), repository: repository.description, commit: commit,
      nonce: (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined(), builtAt: Date(),
      branch: branch, state: .building)
    if let fetch { image.timings["fetch"] = fetch.milliseconds }
    let directory = paths.image(image.id)
    let workspace = directory.appendingPathComponent("workspace", isDirectory: true)
    let meta = directory.appendingPathComponent("meta", isDirectory: true)
    let log = directory.appendingPathComponent("build.log")
    try FileManager.default.createDirectory(at: workspace, withIntermediateDirectories: true)
    try FileManager.default.createDirectory(at: meta, withIntermediateDirectories: true)
    try save(image)
    var step = clock.now
    func lap(_ name: String) {
      image.timings[name] = (clock.now - step).milliseconds
      step = clock.now
    }
    progress?(.step(.checkout, "checking out \(commit.prefix(12))"))
    let extract = try await ProcessRunner.run(
      "/bin/sh",
      [
        "-c", "git --git-dir=\"$0\" archive --format=tar \"$1\" | tar -x -C \"$2\"", mirror.path, commit,
        workspace.path,
      ],
      environment: ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent"])
    guard extract.succeeded else {
      return try fail(&image, "checking out \(commit) failed: \(extract.combinedText)", workspace: workspace)
    }
    lap("checkout")
    let script = workspace.appendingPathComponent(".inspect/setup.sh")
    if FileManager.default.fileExists(atPath: script.path) {
      progress?(.step(.setup, "running .inspect/setup.sh"))
      let logHandle =
        FileHandle(forWritingAtPath: log.path)
        ?? {
          FileManager.default.createFile(atPath: log.path, contents: nil)
          return FileHandle(forWritingAtPath: log.path)
        }()
      let result = try await ProcessRunner.run(
        "/usr/bin/bwrap", Self.setupArguments(workspace: workspace.path) + ["/bin/sh", ".inspect/setup.sh"],
        environment: ["PATH": "/usr/bin:/bin"], timeout: setupTimeout
      ) { _, data in
        logHandle?.write(data)
        progress?(.log(data))
      }
      try? logHandle?.close()
      lap("setup")
      image.setupRan = true
      guard result.succeeded else {
        let tail = String(result.combinedText.suffix(2000))
        let how = result.timedOut ? "ran past \(setupTimeout)" : "exited \(result.exitCode)"
        return try fail(&image, ".inspect/setup.sh \(how): \(tail)", workspace: workspace)
      }
    }
    progress?(.step(.finalize, "sealing the image"))
    try Data((image.nonce + "\n").utf8).write(to: meta.appendingPathComponent("nonce"))
    let size = try await ProcessRunner.run("/usr/bin/du", ["-s", "-B1", workspace.path])
    image.sizeBytes = UInt64(String(decoding: size.stdout, as: UTF8.self).split(separator: "\t").first ?? "") ?? 0
    image.state = .ready
    lap("finalize")
    try JSONCoding.encoder.encode(image).write(to: meta.appendingPathComponent("image.json"))
    try save(image)
    logger.info(
      "built image",
      metadata: [
        "image.id": "\(image.id)", "repository": "\(repository)", "commit": "\(commit)", "setup": "\(image.setupRan)",
      ])
    return image
  }

  /// Records the failure (the image stays listed as FAILED with the reason; its files go).
  private func fail(_ image: inout Image, _ reason: String, workspace: URL) throws -> Image {
    image.state = .failed
    image.error = reason
    try? FileManager.default.removeItem(at: workspace)
    try save(image)
    logger.warning("an image build failed", metadata: ["image.id": "\(image.id)", "error": "\(reason)"])
    return image
  }

  private func save(_ image: Image) throws {
    try FileManager.default.createDirectory(at: paths.images, withIntermediateDirectories: true)
    try JSONCoding.encoder.encode(image).write(to: paths.imageMetadata(image.id), options: .atomic)
  }

  /// Images of `repository` (empty: all), newest first.
  func images(repository: String) -> [Image] {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: paths.images.path)) ?? []
    return files.filter { $0.hasSuffix(".json") }.compactMap { file -> Image? in
      guard let data = FileManager.default.contents(atPath: paths.images.appendingPathComponent(file).path) else {
        return nil
      }
      guard let image = try? JSONCoding.decoder.decode(Image.self, from: data),
        Identifier.isValid(image.id, kind: .image)
      else { return nil }
      return image
    }
    .filter { repository.isEmpty || $0.repository == repository }
    .sorted { ($0.builtAt, $0.id) > ($1.builtAt, $1.id) }
  }

  /// Deletes an image's files and record.
  func removeImage(_ id: String) {
    guard Identifier.isValid(id, kind: .image) else { return }
    try? FileManager.default.removeItem(at: paths.image(id))
    try? FileManager.default.removeItem(at: paths.imageMetadata(id))
  }

  /// The mirror's default branch (what its HEAD names).
  func defaultBranch(of mirror: URL) async throws -> String {
    try await Git.run(["--git-dir", mirror.path, "symbolic-ref", "--short", "HEAD"])
  }

  /// bubblewrap for a setup script: like a sandbox (no network yet: the host's network would
  /// let a repository's script reach the services on the host's loopback; outbound-only
  /// networking is still to come), with the image's tree itself writable at `/workspace`.
  static func setupArguments(workspace: String) -> [String] {
    [
      "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--cap-drop", "ALL", "--hostname", "sandbox",
      "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
      "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin", "--ro-bind", "/etc", "/etc",
      "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", workspace, "/workspace",
      "--chdir", "/workspace", "--clearenv", "--setenv", "PATH", SandboxEnvironment.path, "--setenv", "HOME", "/tmp",
      "--die-with-parent",
    ]
  }
}

/// What an image build reports as it goes.
enum ImageBuildEvent: Sendable {
  enum Step: String, Sendable { case fetch, checkout, setup, finalize }
  case step(Step, String)
  case log(Data)
}
