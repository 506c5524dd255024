import Foundation

/// The demo repository of `docs/CONTRACTS.md`: `examples/demo-repo/` (plain files) becomes the
/// bare remote `<data-dir>/remotes/demo.git` (branch `main`), registered as `local/demo`.
public enum DemoRepository {
  public static let name = "local/demo"

  /// Where the example files are: `$INSPECT_EXAMPLES_DIR/demo-repo`, else `examples/demo-repo`
  /// in the first parent of `start` that has one (the source tree the binaries were built in).
  public static func source(environment: [String: String], start: URL) -> URL? {
    if let configured = environment["INSPECT_EXAMPLES_DIR"], !configured.isEmpty {
      let url = URL(fileURLWithPath: configured).appendingPathComponent("demo-repo")
      return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }
    var directory = start
    while directory.path != "/" {
      let candidate = directory.appendingPathComponent("examples/demo-repo")
      if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
      directory = directory.deletingLastPathComponent()
    }
    return nil
  }

  /// The bare remote for `local/demo` under `dataDirectory`.
  public static func remote(in dataDirectory: URL) -> URL {
    dataDirectory.appendingPathComponent("remotes/demo.git", isDirectory: true)
  }

  /// Creates the bare remote from `source` unless it exists; returns whether it was created.
  @discardableResult
  public static func ensureRemote(in dataDirectory: URL, from source: URL) throws -> Bool {
    let remote = remote(in: dataDirectory)
    guard !FileManager.default.fileExists(atPath: remote.appendingPathComponent("HEAD").path) else { return false }
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-demo-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: work) }
    try FileManager.default.copyItem(at: source, to: work)
    try git(["init", "--quiet", "--initial-branch", "main"], in: work)
    try git(["add", "--all"], in: work)
    try git(
      [
        "-c", "user.name=Inspect", "-c", "user.email=bot@inspect.local", "commit", "--quiet", "-m",
        "The demo repository",
      ],
      in: work)
    try FileManager.default.createDirectory(at: remote.deletingLastPathComponent(), withIntermediateDirectories: true)
    try git(["clone", "--quiet", "--bare", work.path, remote.path], in: work)
    return true
  }

  private static func git(_ arguments: [String], in directory: URL) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
    process.arguments = arguments
    process.currentDirectoryURL = directory
    process.environment = ["PATH": "/usr/bin:/bin", "HOME": directory.path, "GIT_CONFIG_NOSYSTEM": "1"]
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
      let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      throw ConfigurationError("git \(arguments.joined(separator: " ")) failed: \(message)")
    }
  }
}
