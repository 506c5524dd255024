import Foundation

/// A sandbox's writable overlayfs layer as a zstd-compressed tar archive, with what overlayfs
/// needs to replay it over the same image: whiteouts (character devices 0:0, deleted files),
/// opaque directories (`trusted.overlay.opaque`, directories replaced as a whole), owners,
/// modes and times.
enum LayerArchive {
  static let tar = "/usr/bin/tar"
  /// The options both ways: numeric owners, every `trusted.*` extended attribute.
  static let common = ["--zstd", "--numeric-owner", "--xattrs", "--xattrs-include=trusted.*"]

  /// Archives the contents of `directory` as `archive` (written beside it, then renamed).
  /// Returns the archive's size.
  static func create(from directory: URL, to archive: URL) async throws -> UInt64 {
    let partial = archive.path + ".partial"
    let result = try await ProcessRunner.run(
      tar, ["--create", "--file", partial] + common + ["--directory", directory.path, "."],
      environment: ["PATH": "/usr/bin:/bin"], timeout: .seconds(600))
    guard result.succeeded else {
      try? FileManager.default.removeItem(atPath: partial)
      throw SandboxError.failed("archiving the sandbox's layer failed: \(result.combinedText)")
    }
    guard rename(partial, archive.path) == 0 else {
      throw SandboxError.failed("cannot move the snapshot into place: \(String(cString: strerror(errno)))")
    }
    let attributes = try FileManager.default.attributesOfItem(atPath: archive.path)
    return (attributes[.size] as? NSNumber)?.uint64Value ?? 0
  }

  /// Unpacks `archive` into `directory` (an empty upper layer).
  static func extract(_ archive: URL, into directory: URL) async throws {
    let result = try await ProcessRunner.run(
      tar,
      ["--extract", "--file", archive.path] + common + [
        "--same-permissions", "--same-owner", "--directory", directory.path,
      ],
      environment: ["PATH": "/usr/bin:/bin"], timeout: .seconds(600))
    guard result.succeeded else {
      throw SandboxError.failed("unpacking the snapshot \(archive.lastPathComponent) failed: \(result.combinedText)")
    }
  }
}
