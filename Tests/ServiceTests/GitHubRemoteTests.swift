import Foundation
import InspectGitHub
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Synchronization
import Testing

@testable import SandboxService

/// GitHub repositories on the local driver: a real git server over smart HTTP that accepts only
/// the app's installation tokens, and the GitHub REST stand-in that mints them.
extension SandboxTests {
  @Test(
    "a GitHub repository is cloned and pushed over HTTPS with the installation token, which no file on disk ever holds"
  )
  func githubRemote() async throws {
    let key = try await AppKey()
    let server = try TemporaryDirectory("inspect-git-server")
    let data = try TemporaryDirectory("inspect-github-data")
    defer {
      key.directory.remove()
      server.remove()
      data.remove()
    }
    // The server's bare repository acme/web.git holds the demo repository.
    let source = try #require(DemoRepository.source(environment: [:], start: URL(fileURLWithPath: #filePath)))
    try DemoRepository.ensureRemote(in: server.url, from: source)
    try FileManager.default.createDirectory(
      at: server.url.appendingPathComponent("acme"), withIntermediateDirectories: true)
    try FileManager.default.moveItem(
      at: DemoRepository.remote(in: server.url), to: server.url.appendingPathComponent("acme/web.git"))

    let github = try await GitHubStandIn(appID: "42", publicKeyPEM: key.publicPEM, installations: ["acme/web": 7])
    let revoked = Mutex(false)
    let refused = Mutex<Set<String>>([])
    let git = GitHTTPServer(root: server.url) { token in
      !revoked.withLock { $0 } && !refused.withLock { $0.contains(token) } && github.issuedTokens[token] == 7
    }
    try await github.run { apiURL in
      try await git.run { gitURL in
        var driver = LocalDriver(paths: SandboxPaths(data.url), logger: Logger(label: "test"))
        let app = try await GitHubApp(settings: .init(appID: "42", privateKeyPEM: key.privatePEM, apiBaseURL: apiURL))
        driver.github = GitHubRemotes(app: app, gitBaseURL: gitURL)
        let repository = try RepositoryName("acme/web")

        let image = try await driver.image(for: repository, branch: "inspect/none", fallback: "main")
        #expect(image.repository == "acme/web")
        let sandbox = try await driver.createSandbox(from: image, repository: repository, limits: nil)
        try sandbox.writeFile("NOTE.md", content: Data("from a sandbox\n".utf8), mode: nil, createParents: false)
        let pushed = try #require(
          try await sandbox.commitAndPush(
            branch: "inspect/ses-github", message: "Add a note", author: ("Ada", "ada@example.com"),
            committer: ("Inspect", "bot@inspect.local")))
        await sandbox.terminate()
        #expect(pushed.remote == "\(gitURL)/acme/web.git")
        let onServer = try await runCommand(
          "/usr/bin/git",
          [
            "--git-dir", server.url.appendingPathComponent("acme/web.git").path, "rev-parse",
            "refs/heads/inspect/ses-github",
          ],
          environment: ["PATH": "/usr/bin:/bin"])
        #expect(onServer.output.trimmingCharacters(in: .whitespacesAndNewlines) == pushed.commit)

        // Every git request carried an installation token, and the clone, fetch and push all
        // went through.
        let tokens = Set(git.requests.compactMap(\.token))
        #expect(!tokens.isEmpty)
        #expect(tokens.allSatisfy { github.issuedTokens[$0] == 7 })
        #expect(git.requests.contains { $0.path.hasSuffix("/git-receive-pack") && $0.status == 200 })
        // No file under the data directory (mirror configs, sandbox git directories, logs)
        // holds a token or its basic-auth form.
        let secrets = tokens.flatMap { [$0, Data("x-access-token:\($0)".utf8).base64EncodedString()] }
        var scanned = 0
        let files = FileManager.default.enumerator(at: data.url, includingPropertiesForKeys: [.isRegularFileKey])
        while let file = files?.nextObject() as? URL {
          guard (try? file.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true,
            let content = try? Data(contentsOf: file), content.count < 64 << 20
          else { continue }
          scanned += 1
          let text = String(decoding: content, as: UTF8.self)
          for secret in secrets { #expect(!text.contains(secret), "\(file.path) holds a credential") }
        }
        #expect(scanned > 10)
        let mirrorConfig = try String(
          contentsOf: driver.paths.mirror(repository).appendingPathComponent("config"), encoding: .utf8)
        #expect(!mirrorConfig.contains("extraheader"))
        #expect(!mirrorConfig.contains(gitURL))

        // A token refused before its expiry (revoked) is renewed once and the push goes through.
        refused.withLock { $0 = Set(github.issuedTokens.keys) }
        let requested = await app.tokensRequested
        let again = try await driver.createSandbox(from: image, repository: repository, limits: nil)
        try again.writeFile("NOTE2.md", content: Data("again\n".utf8), mode: nil, createParents: false)
        let second = try await again.commitAndPush(
          branch: "inspect/ses-github-2", message: "Another note", author: ("Ada", "ada@example.com"),
          committer: ("Inspect", "bot@inspect.local"))
        await again.terminate()
        #expect(second != nil)
        #expect(await app.tokensRequested == requested + 1)
        #expect(git.requests.contains { $0.status == 401 })

        // A repository the app is not installed on is NOT_FOUND, saying so.
        await #expect(throws: SandboxError.self) {
          _ = try await driver.image(for: try RepositoryName("acme/api"), branch: "main", fallback: "main")
        }
        // A token the server no longer accepts fails the fetch, naming the repository.
        revoked.withLock { $0 = true }
        let failed = await #expect(throws: SandboxError.self) { _ = try await driver.refreshMirror(repository) }
        #expect("\(String(describing: failed))".contains("acme/web"))
        // A push the server refuses even with a fresh token is PERMISSION_DENIED saying why, and
        // ends the turn in PUSH (the agent cannot fix a credential).
        let third = try await driver.createSandbox(from: image, repository: repository, limits: nil)
        try third.writeFile("NOTE3.md", content: Data("third\n".utf8), mode: nil, createParents: false)
        let refusedPush = await #expect(throws: SandboxError.self) {
          _ = try await third.commitAndPush(
            branch: "inspect/ses-github-3", message: "Third note", author: ("Ada", "ada@example.com"),
            committer: ("Inspect", "bot@inspect.local"))
        }
        await third.terminate()
        guard case .permissionDenied(let reason) = refusedPush else {
          Issue.record("expected permissionDenied, got \(String(describing: refusedPush))")
          return
        }
        #expect(reason.contains("a fresh one too"))
        #expect(reason.contains("Contents: write"))
        let ended = pushFailure(SandboxError.permissionDenied(reason), branch: "inspect/ses-github-3") as? TurnEnd
        #expect(ended?.finished.failedPhase == .push)
        #expect(ended?.finished.outcome == .failed)
        #expect(ended?.finished.reason.contains("pushing inspect/ses-github-3 failed") == true)
        #expect(pushFailure(SandboxError.aborted("conflict"), branch: "b") is ToolFailure)
        await driver.reserve.close()
      }
    }
  }
}

extension SandboxTests {
  @Test(
    "a push rejected because someone else pushed first is rebased onto theirs and pushed once more; a conflict is an error that says so"
  )
  func pushRace() async throws {
    let fixture = try SandboxFixture()
    let other = try TemporaryDirectory("inspect-other-clone")
    defer { other.remove() }
    let remote = try fixture.driver.paths.remote(fixture.repository).path
    let environment = [
      "PATH": "/usr/bin:/bin", "HOME": other.url.path, "GIT_AUTHOR_NAME": "Grace",
      "GIT_AUTHOR_EMAIL": "grace@example.com",
      "GIT_COMMITTER_NAME": "Grace", "GIT_COMMITTER_EMAIL": "grace@example.com",
    ]
    let clone = other.url.appendingPathComponent("work").path
    /// Someone else commits `file` with `text` onto `branch` and pushes it; returns the commit.
    func theirCommit(_ file: String, _ text: String, on branch: String) async throws -> String {
      let script = """
        set -e
        [ -d \(clone) ] || git clone --quiet \(remote) \(clone)
        cd \(clone) && git fetch --quiet origin && git checkout --quiet -B \(branch) origin/\(branch)
        printf '%s\\n' '\(text)' > \(file) && git add \(file) && git commit --quiet -m 'Their change'
        git push --quiet origin \(branch) && git rev-parse HEAD
        """
      let result = try await runCommand("/bin/sh", ["-c", script], environment: environment)
      #expect(result.status == 0, "\(result.output)")
      return String(result.output.split(separator: "\n").last ?? "")
    }
    func remoteHead(_ branch: String) async throws -> String {
      try await runCommand(
        "/usr/bin/git", ["--git-dir", remote, "rev-parse", "refs/heads/\(branch)"], environment: environment
      ).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    try await fixture.withSandbox { sandbox in
      let me = (name: "Ada", email: "ada@example.com")
      let bot = (name: "Inspect", email: "bot@inspect.local")
      try sandbox.writeFile("ours.txt", content: Data("one\n".utf8), mode: nil, createParents: false)
      _ = try await sandbox.commitAndPush(branch: "inspect/ses-race", message: "Ours", author: me, committer: bot)
      let theirs = try await theirCommit("theirs.txt", "theirs", on: "inspect/ses-race")

      try sandbox.writeFile("ours.txt", content: Data("two\n".utf8), mode: nil, createParents: false)
      let pushed = try #require(
        try await sandbox.commitAndPush(branch: "inspect/ses-race", message: "Ours again", author: me, committer: bot))
      #expect(try await remoteHead("inspect/ses-race") == pushed.commit)
      let ancestor = try await runCommand(
        "/usr/bin/git", ["--git-dir", remote, "merge-base", "--is-ancestor", theirs, pushed.commit],
        environment: environment)
      #expect(ancestor.status == 0, "their commit is not in what was pushed")
      // The workspace follows the rebase: their file is there.
      #expect(try sandbox.readFile("theirs.txt", offset: 0, limit: 0).content == Data("theirs\n".utf8))

      // Both change ours.txt: no clean rebase, nothing pushed, the reason given.
      let conflicting = try await theirCommit("ours.txt", "their version", on: "inspect/ses-race")
      try sandbox.writeFile("ours.txt", content: Data("my version\n".utf8), mode: nil, createParents: false)
      let error = await #expect(throws: SandboxError.self) {
        _ = try await sandbox.commitAndPush(branch: "inspect/ses-race", message: "Mine", author: me, committer: bot)
      }
      #expect("\(String(describing: error))".contains("do not rebase cleanly"))
      #expect(try await remoteHead("inspect/ses-race") == conflicting)
      #expect(try sandbox.readFile("ours.txt", offset: 0, limit: 0).content == Data("my version\n".utf8))
      // The commit that could not go out is not forgotten: asking again tries to push it again.
      await #expect(throws: SandboxError.self) {
        _ = try await sandbox.commitAndPush(branch: "inspect/ses-race", message: "Mine", author: me, committer: bot)
      }

      // A sync while that commit conflicts with the branch says so and moves nothing (it used to
      // drop the commit silently).
      let moved = try await theirCommit("later.txt", "later", on: "inspect/ses-race")
      let syncError = await #expect(throws: SandboxError.self) {
        _ = try await sandbox.sync(branch: "inspect/ses-race", fallback: "main")
      }
      #expect("\(String(describing: syncError))".contains("conflicts"))
      #expect(try sandbox.readFile("ours.txt", offset: 0, limit: 0).content == Data("my version\n".utf8))
      // Once the branch agrees on that file, the sync goes through and keeps the work.
      let agreed = try await theirCommit("ours.txt", "my version", on: "inspect/ses-race")
      #expect(agreed != moved)
      #expect(try await sandbox.sync(branch: "inspect/ses-race", fallback: "main") == agreed)
      #expect(try sandbox.readFile("ours.txt", offset: 0, limit: 0).content == Data("my version\n".utf8))
      #expect(try sandbox.readFile("later.txt", offset: 0, limit: 0).content == Data("later\n".utf8))

      // Uncommitted changes to a file the branch changed elsewhere are merged, and stay
      // uncommitted.
      try sandbox.writeFile(
        "lines.txt", content: Data("1\n2\n3\n4\n5\n6\n".utf8), mode: nil, createParents: false)
      _ = try await sandbox.commitAndPush(branch: "inspect/ses-race", message: "Lines", author: me, committer: bot)
      _ = try await theirCommit("lines.txt", "one\n2\n3\n4\n5\n6", on: "inspect/ses-race")
      try sandbox.writeFile(
        "lines.txt", content: Data("1\n2\n3\n4\n5\nsix\n".utf8), mode: nil, createParents: false)
      _ = try await sandbox.sync(branch: "inspect/ses-race", fallback: "main")
      #expect(
        try sandbox.readFile("lines.txt", offset: 0, limit: 0).content == Data("one\n2\n3\n4\n5\nsix\n".utf8))
      let pushedLines = try #require(
        try await sandbox.commitAndPush(branch: "inspect/ses-race", message: "Six", author: me, committer: bot))
      #expect(try await remoteHead("inspect/ses-race") == pushedLines.commit)
    }
  }
}

extension SandboxTests {
  @Test(
    "git_commit_and_push: the prompt's author with their profile email, the bot as committer, Co-authored-by for the session's other prompters"
  )
  func commitAuthorship() async throws {
    let fixture = try SandboxFixture()
    let remote = try fixture.driver.paths.remote(fixture.repository).path
    try await fixture.withSandbox { sandbox in
      func prompt(_ id: String, _ name: String, _ email: String) -> Inspect_Sandbox_V1_TurnPrompt {
        .with {
          $0.author = .with {
            $0.userID = id
            $0.displayName = name
            $0.email = email
          }
          $0.text = "a prompt"
        }
      }
      let turn = Inspect_Sandbox_V1_StartTurn.with {
        $0.sessionID = "ses-authors"
        $0.sessionBranch = "inspect/ses-authors"
        $0.committer = .with {
          $0.name = "Inspect"
          $0.email = "bot@inspect.example"
        }
        $0.history.items = [
          .with { $0.prompt = prompt("usr-grace", "Grace", "grace@example.com") },
          .with { $0.prompt = prompt("usr-ada", "Ada", "ada@example.com") },
          .with { $0.prompt = prompt("usr-linus", "Linus", "") },
        ]
        $0.prompts = [prompt("usr-grace", "Grace", "grace@example.com"), prompt("usr-ada", "Ada", "ada@example.com")]
      }
      try sandbox.writeFile("authors.txt", content: Data("x\n".utf8), mode: nil, createParents: false)
      let context = ToolContext(sandbox: sandbox, turn: turn, toolCallID: "tc-commit", emit: { _ in })
      _ = try await BuiltinTools.gitCommitAndPush.run(Data(#"{"message":"Record the authors"}"#.utf8), context)
      let log = try await runCommand(
        "/usr/bin/git",
        ["--git-dir", remote, "log", "-1", "--format=%an <%ae>%n%cn <%ce>%n%B", "refs/heads/inspect/ses-authors"],
        environment: ["PATH": "/usr/bin:/bin"])
      let lines = log.output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
      #expect(lines[0] == "Ada <ada@example.com>")
      #expect(lines[1] == "Inspect <bot@inspect.example>")
      #expect(lines[2] == "Record the authors")
      #expect(
        Array(lines[4...6]) == [
          "Co-authored-by: Grace <grace@example.com>", "Co-authored-by: Linus <usr-linus@users.inspect.local>", "",
        ], "\(log.output)")
    }
  }
}
