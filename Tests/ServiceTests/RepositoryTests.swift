import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import SandboxService
@testable import SessionService

@Suite("Repositories: registered by owner/name, mirrored by SandboxService")
struct RepositoryTests {
  @Test(
    "RegisterRepository fetches the mirror through SandboxService and lists it; again fetches anew; unknown and malformed names are refused"
  )
  func registerAndList() async throws {
    try await withSandboxService { sandbox, data in
      let remote = DemoRepository.remote(in: data)
      let head = try await Git.run(["--git-dir", remote.path, "rev-parse", "main"])
        .trimmingCharacters(in: .whitespacesAndNewlines)
      // SandboxService's own answer.
      let mirrored = try await sandbox.mirrorRepository(.with { $0.repository = "local/demo" })
      #expect(mirrored.defaultBranch == "main")
      #expect(mirrored.headCommit == head)
      #expect(mirrored.branches >= 1)
      #expect(
        FileManager.default.fileExists(atPath: data.appendingPathComponent("repos/local/demo/mirror.git/HEAD").path))
      #expect(
        await statusCode { _ = try await sandbox.mirrorRepository(.with { $0.repository = "local/nope" }) } == .notFound
      )
      #expect(
        await statusCode { _ = try await sandbox.mirrorRepository(.with { $0.repository = "no-owner" }) }
          == .invalidArgument)
      #expect(
        await statusCode { _ = try await sandbox.mirrorRepository(.with { $0.repository = "acme/../x" }) }
          == .invalidArgument)
      // A GitHub repository with no app configured: said so (a precondition of this deployment).
      let github = await #expect(throws: RPCError.self) {
        _ = try await sandbox.mirrorRepository(.with { $0.repository = "acme/web" })
      }
      #expect(github?.code == .failedPrecondition)
      #expect(github?.message.contains("INSPECT_GITHUB_APP_ID") == true)

      // Through SessionService, as `inspect repos add` calls it.
      let runner = SandboxAgentRunner(
        client: sandbox, address: HostAndPort(host: "127.0.0.1", port: 0), secrets: nil)
      let harness = try await SessionHarness(runner: runner)
      try await harness.run { sessions, metadata in
        let first = try await sessions.registerRepository(.with { $0.repository = "local/demo" }, metadata: metadata)
        #expect(first.created)
        #expect(first.repository.name == "local/demo")
        #expect(first.repository.defaultBranch == "main")
        #expect(first.repository.headCommit == head)
        #expect(first.repository.registeredBy.displayName == "Ada")

        try await pushCommit(to: remote, files: ["NEW.md": "new\n"])
        let newHead = try await Git.run(["--git-dir", remote.path, "rev-parse", "main"])
          .trimmingCharacters(in: .whitespacesAndNewlines)
        let (bob, bobMetadata) = try await harness.makeUser("Bob")
        _ = bob
        let again = try await sessions.registerRepository(.with { $0.repository = "local/demo" }, metadata: bobMetadata)
        #expect(!again.created)
        #expect(again.repository.headCommit == newHead)
        #expect(again.repository.registeredBy.displayName == "Ada")

        let listed = try await sessions.listRepositories(.init(), metadata: metadata).repositories
        #expect(listed.map(\.name) == ["local/demo"])
        #expect(listed.first?.headCommit == newHead)

        let missing = await #expect(throws: RPCError.self) {
          _ = try await sessions.registerRepository(.with { $0.repository = "local/nope" }, metadata: metadata)
        }
        #expect(missing?.code == .notFound)
        #expect(missing?.message.contains("local/nope") == true)
        #expect(
          await rpcCode {
            _ = try await sessions.registerRepository(.with { $0.repository = "nope" }, metadata: metadata)
          } == .invalidArgument)
        #expect(try await sessions.listRepositories(.init(), metadata: metadata).repositories.count == 1)
      }
    }
  }

  @Test("git's own messages for an unreachable remote and a missing repository are told apart")
  func gitFailureMessages() async throws {
    let environment = ["PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0"]
    // Nothing listens on loopback port 9.
    let refused = try await runCommand(
      "/usr/bin/git", ["ls-remote", "http://127.0.0.1:9/acme/web.git"], environment: environment)
    #expect(refused.status != 0)
    #expect(GitFailure.isUnreachable(refused.output), "\(refused.output)")
    #expect(!GitFailure.isAuthentication(refused.output))
    let missing = try await runCommand(
      "/usr/bin/git", ["ls-remote", "/nonexistent/inspect/repo.git"], environment: environment)
    #expect(missing.status != 0)
    #expect(GitFailure.isMissingRepository(missing.output), "\(missing.output)")
    #expect(!GitFailure.isUnreachable(missing.output))
  }
}
