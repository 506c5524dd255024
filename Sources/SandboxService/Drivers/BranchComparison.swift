import Foundation
import InspectKit
import InspectProtos

/// What a branch changes since it left its base, read from a repository's bare mirror with host
/// git (no diff drivers or text conversions from the repository run).
enum BranchComparison {
  /// The largest patch a caller may ask for.
  static let maxPatchBytes = 8 << 20
  static let defaultPatchBytes = 1 << 20

  /// Fails with ``SandboxError/invalid(_:)`` unless `name` is a valid branch name.
  static func validate(branch name: String, role: String) async throws {
    guard !name.isEmpty, !name.hasPrefix("-"), name.utf8.count <= 255 else {
      throw SandboxError.invalid("the \(role) branch '\(name)' is not a branch name")
    }
    do {
      _ = try await Git.run(["check-ref-format", "--branch", name])
    } catch {
      throw SandboxError.invalid("the \(role) branch '\(name)' is not a branch name")
    }
  }

  /// `git diff base...head` in the bare repository `gitDirectory`. A head branch that does not
  /// exist is an empty diff with an empty head commit; a missing base is NOT_FOUND.
  static func compare(
    gitDirectory: URL, repository: RepositoryName, base: String, head: String, maxPatchBytes: Int
  ) async throws -> Inspect_Common_V1_BranchDiff {
    let gitDir = ["--git-dir", gitDirectory.path]
    func commit(_ branch: String) async -> String? {
      try? await Git.run(gitDir + ["rev-parse", "--verify", "--quiet", "refs/heads/\(branch)^{commit}"])
    }
    guard let baseTip = await commit(base) else {
      throw SandboxError.notFound("branch '\(base)' does not exist in \(repository)")
    }
    guard let headCommit = await commit(head) else {
      return .with { $0.baseCommit = baseTip }
    }
    // Branches without a common history compare against the base's tip.
    let mergeBase = (try? await Git.run(gitDir + ["merge-base", baseTip, headCommit])) ?? baseTip
    let diff = gitDir + ["diff", "--no-ext-diff", "--no-textconv", "--no-color", "-M"]
    let statuses = try await Git.run(diff + ["--name-status", "-z", mergeBase, headCommit])
    let counts = try await Git.run(diff + ["--numstat", "-z", mergeBase, headCommit])
    var files = parseNameStatus(statuses)
    for (index, count) in parseNumstat(counts).enumerated() where index < files.count {
      files[index].binary = count == nil
      files[index].additions = count?.additions ?? 0
      files[index].deletions = count?.deletions ?? 0
    }

    // The patch goes to a file, of which only the allowed bytes are read.
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-diff-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: output) }
    try await Git.run(diff + ["--output=\(output.path)", mergeBase, headCommit])
    let handle = try FileHandle(forReadingFrom: output)
    defer { try? handle.close() }
    let limit = maxPatchBytes <= 0 ? defaultPatchBytes : min(maxPatchBytes, Self.maxPatchBytes)
    var bytes = try handle.read(upToCount: limit + 1) ?? Data()
    let truncated = bytes.count > limit
    if truncated {
      bytes = bytes.prefix(limit)
      // Cut at the end of a line, and never inside a UTF-8 character.
      if let newline = bytes.lastIndex(of: UInt8(ascii: "\n")) { bytes = bytes.prefix(through: newline) }
    }
    return .with {
      $0.baseCommit = mergeBase
      $0.headCommit = headCommit
      $0.files = files
      $0.patch = String(decoding: bytes, as: UTF8.self)
      $0.truncated = truncated
    }
  }

  /// `git diff --name-status -z`: `S\0path\0`, or `R<score>\0old\0new\0` for renames and copies.
  static func parseNameStatus(_ output: String) -> [Inspect_Common_V1_FileDiff] {
    var fields = output.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
    if fields.last == "" { fields.removeLast() }
    var files: [Inspect_Common_V1_FileDiff] = []
    var index = 0
    while index + 1 < fields.count {
      let code = fields[index].first ?? "M"
      var file = Inspect_Common_V1_FileDiff()
      switch code {
      case "R", "C":
        guard index + 2 < fields.count else { return files }
        file.oldPath = fields[index + 1]
        file.path = fields[index + 2]
        file.status = code == "R" ? "renamed" : "copied"
        index += 3
      default:
        file.path = fields[index + 1]
        file.status =
          switch code {
          case "A": "added"
          case "D": "deleted"
          case "T": "type_changed"
          default: "modified"
          }
        index += 2
      }
      files.append(file)
    }
    return files
  }

  /// `git diff --numstat -z`: `add\tdel\tpath\0`, or `add\tdel\t\0old\0new\0` for renames;
  /// `-\t-` for binary files (nil here).
  static func parseNumstat(_ output: String) -> [(additions: UInt32, deletions: UInt32)?] {
    var fields = output.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
    if fields.last == "" { fields.removeLast() }
    var counts: [(additions: UInt32, deletions: UInt32)?] = []
    var index = 0
    while index < fields.count {
      let parts = fields[index].split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
      guard parts.count >= 2 else { break }
      let isRename = parts.count < 3 || parts[2].isEmpty
      if let added = UInt32(parts[0]), let deleted = UInt32(parts[1]) {
        counts.append((added, deleted))
      } else {
        counts.append(nil)
      }
      index += isRename ? 3 : 1
    }
    return counts
  }
}
