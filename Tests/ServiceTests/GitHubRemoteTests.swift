import Foundation
import InspectGitHub
import InspectKit
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
    let git = GitHTTPServer(root: server.url) { token in
      !revoked.withLock { $0 } && github.issuedTokens[token] == 7
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

        // A repository the app is not installed on is NOT_FOUND, saying so.
        await #expect(throws: SandboxError.self) {
          _ = try await driver.image(for: try RepositoryName("acme/api"), branch: "main", fallback: "main")
        }
        // A token the server no longer accepts fails the fetch, naming the repository.
        revoked.withLock { $0 = true }
        let refused = await #expect(throws: SandboxError.self) { _ = try await driver.refreshMirror(repository) }
        #expect("\(String(describing: refused))".contains("acme/web"))
        await driver.reserve.close()
      }
    }
  }
}
