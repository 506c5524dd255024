import Foundation
import InspectKit
import InspectProtos
import Testing

@testable import SandboxService

@Suite("Comparing a branch with its base in a bare mirror")
struct BranchComparisonTests {
  /// A bare repository whose `feature` branch modifies, renames, deletes and adds (a binary
  /// too), while `main` moved on after `feature` left it.
  private func repository() async throws -> (bare: URL, cleanup: () -> Void) {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-compare-\(UUID().uuidString)")
    let work = root.appendingPathComponent("work")
    let bare = root.appendingPathComponent("mirror.git")
    try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    let identity = [
      "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_NAME": "Test",
      "GIT_COMMITTER_EMAIL": "test@example.com",
    ]
    func git(_ arguments: String...) async throws {
      try await Git.run(["-C", work.path] + arguments, environment: identity)
    }
    func write(_ path: String, _ content: String) throws {
      try content.write(to: work.appendingPathComponent(path), atomically: true, encoding: .utf8)
    }
    try await git("init", "--quiet", "--initial-branch=main")
    try write("a.txt", "one\ntwo\nthree\n")
    try write("old.txt", (1...20).map { "line \($0) of a file that moves\n" }.joined())
    try write("gone.txt", "soon gone\n")
    try await git("add", "--all")
    try await git("commit", "--quiet", "-m", "base")
    try await git("checkout", "--quiet", "-b", "feature")
    try write("a.txt", "one\n2\nthree\n")
    try await git("mv", "old.txt", "new.txt")
    try await git("rm", "--quiet", "gone.txt")
    try Data([0, 1, 2, 0, 255]).write(to: work.appendingPathComponent("blob.bin"))
    try write("with space.txt", "hello\n")
    try await git("add", "--all")
    try await git("commit", "--quiet", "-m", "feature")
    try await git("checkout", "--quiet", "main")
    try write("later.txt", "main moved on\n")
    try await git("add", "--all")
    try await git("commit", "--quiet", "-m", "later")
    try await Git.run(["clone", "--quiet", "--mirror", work.path, bare.path])
    return (bare, { try? FileManager.default.removeItem(at: root) })
  }

  @Test("files with their status and line counts, renames, binaries and the patch; main's later work is not in it")
  func compare() async throws {
    let (bare, cleanup) = try await repository()
    defer { cleanup() }
    let name = try RepositoryName("local/compare")
    let diff = try await BranchComparison.compare(
      gitDirectory: bare, repository: name, base: "main", head: "feature", maxPatchBytes: 0)
    let files = diff.files.map {
      [$0.status, $0.oldPath, $0.path, "\($0.additions)", "\($0.deletions)", "\($0.binary)"]
    }
    #expect(
      files == [
        ["modified", "", "a.txt", "1", "1", "false"],
        ["added", "", "blob.bin", "0", "0", "true"],
        ["deleted", "", "gone.txt", "0", "1", "false"],
        ["renamed", "old.txt", "new.txt", "0", "0", "false"],
        ["added", "", "with space.txt", "1", "0", "false"],
      ])
    #expect(diff.headCommit == (try await Git.run(["--git-dir", bare.path, "rev-parse", "feature"])))
    #expect(diff.baseCommit == (try await Git.run(["--git-dir", bare.path, "rev-parse", "main~1"])))
    #expect(diff.patch.contains("-two\n+2\n"))
    #expect(diff.patch.contains("rename from old.txt\nrename to new.txt"))
    #expect(!diff.patch.contains("later.txt"))
    #expect(!diff.truncated)

    // Cut short: at a line's end, marked.
    let cut = try await BranchComparison.compare(
      gitDirectory: bare, repository: name, base: "main", head: "feature", maxPatchBytes: 100)
    #expect(cut.truncated)
    #expect(cut.patch.utf8.count <= 100 && cut.patch.hasSuffix("\n") && diff.patch.hasPrefix(cut.patch))
    #expect(cut.files == diff.files)
  }

  @Test("a head branch not pushed yet is an empty diff; a missing base is NOT_FOUND; bad names are refused")
  func missingAndMalformed() async throws {
    let (bare, cleanup) = try await repository()
    defer { cleanup() }
    let name = try RepositoryName("local/compare")
    let empty = try await BranchComparison.compare(
      gitDirectory: bare, repository: name, base: "main", head: "inspect/ses-0-none", maxPatchBytes: 0)
    #expect(empty.headCommit.isEmpty && empty.files.isEmpty && empty.patch.isEmpty)
    #expect(empty.baseCommit == (try await Git.run(["--git-dir", bare.path, "rev-parse", "main"])))
    await #expect {
      _ = try await BranchComparison.compare(
        gitDirectory: bare, repository: name, base: "develop", head: "feature", maxPatchBytes: 0)
    } throws: { error in
      guard case SandboxError.notFound(let message) = error else { return false }
      return message.contains("develop")
    }
    for bad in ["", "-x", "a..b", "has space", "refs/../x", "x.lock", String(repeating: "a", count: 300)] {
      await #expect(throws: SandboxError.self, "\(bad)") {
        try await BranchComparison.validate(branch: bad, role: "head")
      }
    }
    try await BranchComparison.validate(branch: "inspect/ses-0-01jabcdefghjkmnpqrstvwxyz0", role: "head")
  }

  @Test("a cut patch never splits a character or passes the limit, without line ends or with bytes that are not UTF-8")
  func cutting() {
    let accents = Data(String(repeating: "é", count: 100).utf8)
    let cut = BranchComparison.cut(accents, to: 51)
    #expect(cut.truncated && cut.text == String(repeating: "é", count: 25))
    // Latin-1 `é` becomes U+FFFD (3 bytes); the cut is made after that, at the line's end.
    let latin1 = Data([0x63, 0x61, 0x66, 0xE9, 0x0A] + Array(repeating: 0x41, count: 10))
    let lossy = BranchComparison.cut(latin1, to: 8)
    #expect(lossy.truncated && lossy.text == "caf\u{FFFD}\n" && lossy.text.utf8.count <= 8)
    let whole = BranchComparison.cut(Data("short\n".utf8), to: 100)
    #expect(!whole.truncated && whole.text == "short\n")
  }
}
