import Foundation
import InspectKit
import InspectProtos

/// What a branch changes since it left its base, read from a repository's bare mirror with host
/// git (no diff drivers or text conversions from the repository run).
enum BranchComparison {
  /// The largest patch a caller may ask for (the answer crosses two gRPC hops, whose messages
  /// are at most 4 MiB).
  static let maxPatchBytes = 2 << 20
  static let defaultPatchBytes = 1 << 20
  /// The most files listed (the rest are counted in `files_truncated`).
  static let maxFiles = 3000

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

  /// `git diff base...head` in the bare repository `gitDirectory` (``tips`` then ``diff``).
  static func compare(
    gitDirectory: URL, repository: RepositoryName, base: String, head: String, maxPatchBytes: Int
  ) async throws -> Inspect_Common_V1_BranchDiff {
    let tips = try await tips(gitDirectory: gitDirectory, repository: repository, base: base, head: head)
    return try await diff(gitDirectory: gitDirectory, tips: tips, maxPatchBytes: maxPatchBytes)
  }

  /// The commits to compare: the merge base of the branches and the head's tip (nil when the head
  /// branch does not exist). A missing base is NOT_FOUND. Commits never change, so a caller may
  /// resolve them under the mirror's lock and diff them after letting it go.
  static func tips(
    gitDirectory: URL, repository: RepositoryName, base: String, head: String
  ) async throws -> (base: String, head: String?) {
    let gitDir = ["--git-dir", gitDirectory.path]
    func commit(_ branch: String) async -> String? {
      try? await Git.run(gitDir + ["rev-parse", "--verify", "--quiet", "refs/heads/\(branch)^{commit}"])
    }
    guard let baseTip = await commit(base) else {
      throw SandboxError.notFound("branch '\(base)' does not exist in \(repository)")
    }
    guard let headCommit = await commit(head) else { return (baseTip, nil) }
    // Branches without a common history compare against the base's tip.
    let mergeBase = (try? await Git.run(gitDir + ["merge-base", baseTip, headCommit])) ?? baseTip
    return (mergeBase, headCommit)
  }

  /// The changes from `tips.base` to `tips.head`: files with their status and line counts, and
  /// the unified diff cut at `maxPatchBytes` (0: the default) at a line's end.
  static func diff(
    gitDirectory: URL, tips: (base: String, head: String?), maxPatchBytes: Int
  ) async throws -> Inspect_Common_V1_BranchDiff {
    guard let headCommit = tips.head else { return .with { $0.baseCommit = tips.base } }
    let diff = ["--git-dir", gitDirectory.path, "diff", "--no-ext-diff", "--no-textconv", "--no-color", "-M"]
    let statuses = try await Git.run(diff + ["--name-status", "-z", tips.base, headCommit])
    let counts = try await Git.run(diff + ["--numstat", "-z", tips.base, headCommit])
    var files = parseNameStatus(statuses)
    for (index, count) in parseNumstat(counts).enumerated() where index < files.count {
      files[index].binary = count == nil
      files[index].additions = count?.additions ?? 0
      files[index].deletions = count?.deletions ?? 0
    }
    let listed = files.count

    // The patch goes to a file, of which only the allowed bytes are read.
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-diff-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: output) }
    try await Git.run(diff + ["--output=\(output.path)", tips.base, headCommit])
    let handle = try FileHandle(forReadingFrom: output)
    defer { try? handle.close() }
    let limit = maxPatchBytes <= 0 ? defaultPatchBytes : min(maxPatchBytes, Self.maxPatchBytes)
    let bytes = try handle.read(upToCount: limit + 1) ?? Data()
    let (patch, truncated) = cut(bytes, to: limit)
    return .with {
      $0.baseCommit = tips.base
      $0.headCommit = headCommit
      $0.files = Array(files.prefix(maxFiles))
      $0.filesTruncated = UInt32(max(0, listed - maxFiles))
      $0.patch = patch
      $0.truncated = truncated
    }
  }

  /// `bytes` as text of at most `limit` UTF-8 bytes: whole lines when it had to be cut, else whole
  /// characters. Bytes that are not UTF-8 become U+FFFD (the cut is made after that, so the
  /// limit holds).
  static func cut(_ bytes: Data, to limit: Int) -> (text: String, truncated: Bool) {
    let text = String(decoding: bytes, as: UTF8.self)
    guard text.utf8.count > limit else { return (text, false) }
    // The longest prefix of whole scalars within the limit, then back to its last line end.
    var size = 0
    for scalar in text.unicodeScalars {
      let width = UTF8.width(scalar)
      guard size + width <= limit else { break }
      size += width
    }
    let end = text.utf8.index(text.utf8.startIndex, offsetBy: size)
    var prefix = text[..<end]
    if let newline = prefix.lastIndex(of: "\n") { prefix = prefix[...newline] }
    return (String(prefix), true)
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
