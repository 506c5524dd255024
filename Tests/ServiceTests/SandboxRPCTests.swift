import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos
import InspectTestSupport
import Synchronization
import Testing

@testable import SandboxService

typealias SandboxClient = Inspect_Sandbox_V1_SandboxService.Client<HTTP2ClientTransport.Posix>

/// Runs SandboxService in-process (real HTTP/2, the local driver) over a data directory with the
/// demo remote; `body` gets a client and the data directory.
func withSandboxService<T: Sendable>(
  environment: [String: String] = [:], _ body: @Sendable (SandboxClient, URL) async throws -> T
) async throws -> T {
  try await TemporaryDirectory.with { directory in
    let source = try #require(DemoRepository.source(environment: [:], start: URL(fileURLWithPath: #filePath)))
    try DemoRepository.ensureRemote(in: directory, from: source)
    let built = try await SandboxServiceApp.build(testConfiguration(.sandbox, dataDirectory: directory))
    return try await withRunningService(built) { addresses in
      try await withClient(addresses.grpc) { client in try await body(SandboxClient(wrapping: client), directory) }
    }
  }
}

/// What one Exec returned.
struct ExecOutcome: Sendable {
  var stdout = Data()
  var stderr = Data()
  var exit: Inspect_Sandbox_V1_ExecExit?
  var started = false
  var text: String { String(decoding: stdout, as: UTF8.self) }
}

extension SandboxClient {
  /// Runs `argv` with `messages` sent after `start` (stdin, signals…), collecting everything.
  func run(
    _ sandboxID: String, _ argv: [String], directory: String = "", timeout: Duration? = nil,
    then messages: [Inspect_Sandbox_V1_ExecRequest] = [], afterStart delay: Duration = .zero
  ) async throws -> ExecOutcome {
    let start = Inspect_Sandbox_V1_ExecRequest.with {
      $0.start = .with {
        $0.sandboxID = sandboxID
        $0.argv = argv
        $0.workingDirectory = directory
        if let timeout { $0.timeout = .init(rounding: timeout) }
      }
    }
    return try await exec(
      requestProducer: { writer in
        try await writer.write(start)
        if delay > .zero { try await Task.sleep(for: delay) }
        for message in messages { try await writer.write(message) }
      },
      onResponse: { response in
        var outcome = ExecOutcome()
        for try await message in response.messages {
          switch message.kind {
          case .started: outcome.started = true
          case .stdout(let data): outcome.stdout.append(data)
          case .stderr(let data): outcome.stderr.append(data)
          case .exit(let exit): outcome.exit = exit
          case .none: break
          }
        }
        return outcome
      })
  }

  func create(
    session: String = "ses-rpc", branch: String = "main", snapshot: String = ""
  ) async throws
    -> Inspect_Sandbox_V1_Sandbox
  {
    try await createSandbox(
      .with {
        $0.repository = "local/demo"
        $0.sessionID = session
        $0.branch = branch
        $0.snapshotID = snapshot
      }
    ).sandbox
  }
}

/// What one BuildImage stream carried.
struct BuildOutcome: Sendable {
  var steps: [Inspect_Sandbox_V1_BuildStep] = []
  var log = ""
  var result = Inspect_Sandbox_V1_BuildImageResult()
}

extension SandboxClient {
  func build(_ repository: String, branch: String = "", force: Bool = false) async throws -> BuildOutcome {
    try await buildImage(
      .with {
        $0.repository = repository
        $0.branch = branch
        $0.force = force
      }
    ) { response in
      var outcome = BuildOutcome()
      for try await message in response.messages {
        switch message.kind {
        case .progress(let progress): outcome.steps.append(progress.step)
        case .log(let data): outcome.log += String(decoding: data, as: UTF8.self)
        case .result(let result): outcome.result = result
        case .none: break
        }
      }
      return outcome
    }
  }
}

/// The gRPC status code `body` failed with, or nil when it succeeded.
func statusCode(_ body: () async throws -> Void) async -> RPCError.Code? {
  do {
    try await body()
    return nil
  } catch let error as RPCError {
    return error.code
  } catch {
    return .unknown
  }
}

@Suite("SandboxService's RPCs on the local driver: exec, files, snapshots, pools, bad input", .serialized)
struct SandboxRPCTests {
  @Test("Exec: stdin in, stdout out, exit codes, signals, timeouts and working directories")
  func exec() async throws {
    try await withSandboxService { client, _ in
      let sandbox = try await client.create()
      #expect(sandbox.id.hasPrefix("sbx-"))
      #expect(sandbox.driver == "local")
      #expect(sandbox.workspacePath == "/workspace")
      let nonce = "nonce-\(UInt64.random(in: 1...UInt64.max))"
      let echoed = try await client.run(
        sandbox.id, ["cat"], then: [.with { $0.stdin = Data(nonce.utf8) }, .with { $0.closeStdin = .init() }])
      #expect(echoed.started)
      #expect(echoed.text == nonce)
      #expect(echoed.exit?.exitCode == 0)
      let failing = try await client.run(sandbox.id, ["/bin/sh", "-c", "echo oops >&2; exit 3"])
      #expect(failing.exit?.exitCode == 3)
      #expect(String(decoding: failing.stderr, as: UTF8.self) == "oops\n")
      let slow = try await client.run(sandbox.id, ["sleep", "30"], timeout: .milliseconds(300))
      #expect(slow.exit?.timedOut == true)
      let signalled = try await client.run(
        sandbox.id, ["sleep", "30"], then: [.with { $0.signal = 15 }], afterStart: .milliseconds(200))
      #expect(signalled.exit?.signal == 15)
      #expect(signalled.exit?.timedOut == false)
      let inside = try await client.run(sandbox.id, ["pwd"], directory: "sub/..")
      #expect(inside.text == "/workspace\n")
      #expect(
        await statusCode { _ = try await client.run(sandbox.id, ["pwd"], directory: "../..") } == .invalidArgument)
      #expect(await statusCode { _ = try await client.run(sandbox.id, []) } == .invalidArgument)
      #expect(await statusCode { _ = try await client.run("sbx-none", ["true"]) } == .notFound)
      #expect(await statusCode { _ = try await client.run(sandbox.id, ["/no/such/program"]) } == .invalidArgument)
      let notStart = await statusCode {
        _ = try await client.exec(
          requestProducer: { try await $0.write(.with { $0.stdin = Data("x".utf8) }) },
          onResponse: { response in for try await _ in response.messages {} })
      }
      #expect(notStart == .invalidArgument)
      // Standard input sent to a command that closed it: an error for that write, not the end of
      // the service (SIGPIPE is ignored).
      let closed = try await client.run(
        sandbox.id, ["/bin/sh", "-c", "exec 0<&-; sleep 0.4; echo done"],
        then: [.with { $0.stdin = Data(count: 256 * 1024) }], afterStart: .milliseconds(200))
      #expect(closed.text == "done\n")
      // The service is still up and the sandbox still works.
      #expect(try await client.run(sandbox.id, ["echo", "ok"]).text == "ok\n")
    }
  }

  @Test("files: write, read, list; escapes are INVALID_ARGUMENT or PERMISSION_DENIED; limits and unknown ids")
  func files() async throws {
    try await withSandboxService { client, _ in
      let sandbox = try await client.create()
      let written = try await client.writeFile(
        .with {
          $0.sandboxID = sandbox.id
          $0.path = "notes/today.txt"
          $0.content = Data("hello, sandbox".utf8)
          $0.createParents = true
        })
      #expect(written.sizeBytes == 14)
      let read = try await client.readFile(
        .with {
          $0.sandboxID = sandbox.id
          $0.path = "/workspace/notes/today.txt"
          $0.offset = 7
        })
      #expect(String(decoding: read.content, as: UTF8.self) == "sandbox")
      #expect(read.sizeBytes == 14 && !read.truncated)
      let listed = try await client.listFiles(.with { $0.sandboxID = sandbox.id })
      #expect(listed.entries.contains { $0.path == "notes" && $0.type == .directory })
      #expect(listed.entries.contains { $0.path == "calc.py" && $0.type == .file && $0.sizeBytes > 0 })
      let linked = try await client.run(sandbox.id, ["ln", "-s", "/etc", "out"])
      #expect(linked.exit?.exitCode == 0)
      func readCode(_ path: String) async -> RPCError.Code? {
        await statusCode {
          _ = try await client.readFile(
            .with {
              $0.sandboxID = sandbox.id
              $0.path = path
            })
        }
      }
      #expect(await readCode("../../etc/passwd") == .invalidArgument)
      #expect(await readCode("/etc/passwd") == .invalidArgument)
      #expect(await readCode("out/passwd") == .permissionDenied)
      #expect(await readCode("notes") == .invalidArgument)
      #expect(await readCode("missing.txt") == .notFound)
      let tooLarge = await statusCode {
        _ = try await client.writeFile(
          .with {
            $0.sandboxID = sandbox.id
            $0.path = "big.bin"
            $0.content = Data(count: HostWorkspace.maxWrite + 1)
          })
      }
      #expect(tooLarge == .resourceExhausted)
      let noParent = await statusCode {
        _ = try await client.writeFile(
          .with {
            $0.sandboxID = sandbox.id
            $0.path = "a/b/c.txt"
            $0.content = Data("x".utf8)
          })
      }
      #expect(noParent == .notFound)
      let unknown = await statusCode { _ = try await client.listFiles(.with { $0.sandboxID = "sbx-unknown" }) }
      #expect(unknown == .notFound)
      #expect(
        await statusCode { _ = try await client.createSandbox(.with { $0.repository = "not a repo" }) }
          == .invalidArgument)
    }
  }

  @Test("a snapshot restores an identical tree (deletions and replaced directories too), after the sandbox is gone")
  func snapshotRestore() async throws {
    try await withSandboxService { client, data in
      // The image gets a directory the sandbox will replace as a whole (an opaque directory).
      try await pushCommit(to: DemoRepository.remote(in: data), files: ["olddir/a": "a\n", "olddir/b": "b\n"])
      let sandbox = try await client.create()
      // Edits, a new directory with a private file, a deleted file (a whiteout), the replaced
      // directory, and a start script for processes.
      let changes = try await client.run(
        sandbox.id,
        [
          "/bin/sh", "-c",
          """
          set -e
          test -f olddir/a
          echo '# changed' >> calc.py
          mkdir -p deep/er && echo one > deep/er/one.txt && chmod 600 deep/er/one.txt
          rm README.md
          rm -rf olddir && mkdir olddir && echo c > olddir/c
          mkdir -p .inspect && printf 'echo started > /tmp/start-ran\\n' > .inspect/start.sh
          """,
        ])
      #expect(changes.exit?.exitCode == 0, "\(String(decoding: changes.stderr, as: UTF8.self))")
      let upper = data.appendingPathComponent("sandboxes/\(sandbox.id)/upper")
      let opaque = try await ProcessRunner.run(
        "/usr/bin/python3",
        [
          "-c", "import os, sys; print(os.getxattr(sys.argv[1], 'trusted.overlay.opaque'))",
          upper.appendingPathComponent("olddir").path,
        ])
      #expect(opaque.combinedText == "b'y'\n", "\(opaque.combinedText)")
      let whiteout = try await ProcessRunner.run(
        "/usr/bin/stat", ["-c", "%F %t:%T", upper.appendingPathComponent("README.md").path])
      #expect(String(decoding: whiteout.stdout, as: UTF8.self) == "character special file 0:0\n")
      let merged = data.appendingPathComponent("sandboxes/\(sandbox.id)/merged")
      let copy = data.appendingPathComponent("expected-tree")
      let copied = try await ProcessRunner.run("/bin/cp", ["-a", merged.path, copy.path])
      #expect(copied.succeeded)
      let terminated = try await client.terminate(
        .with {
          $0.sandboxID = sandbox.id
          $0.snapshot = true
        })
      let snapshot = terminated.snapshot
      #expect(snapshot.id.hasPrefix("snp-"))
      #expect(snapshot.sessionID == "ses-rpc")
      #expect(snapshot.sizeBytes > 0)
      #expect(!FileManager.default.fileExists(atPath: merged.path))
      #expect(
        FileManager.default.fileExists(atPath: data.appendingPathComponent("snapshots/\(snapshot.id).tar.zst").path))
      let restored = try await client.create(snapshot: snapshot.id)
      #expect(restored.source == .snapshot)
      #expect(restored.snapshotID == snapshot.id)
      let restoredTree = data.appendingPathComponent("sandboxes/\(restored.id)/merged")
      let diff = try await ProcessRunner.run("/usr/bin/diff", ["-r", "--no-dereference", copy.path, restoredTree.path])
      #expect(diff.exitCode == 0, "\(diff.combinedText)")
      let modes = try await ProcessRunner.run(
        "/usr/bin/stat", ["-c", "%a", restoredTree.appendingPathComponent("deep/er/one.txt").path])
      #expect(String(decoding: modes.stdout, as: UTF8.self) == "600\n")
      // The start script ran after the restore.
      let started = try await client.run(restored.id, ["cat", "/tmp/start-ran"])
      #expect(started.text == "started\n")
      #expect(await statusCode { _ = try await client.create(snapshot: Identifier.make(.snapshot)) } == .notFound)
      let traversal = await statusCode { _ = try await client.create(snapshot: "../sandboxes/x") }
      #expect(traversal == .invalidArgument, "\(String(describing: traversal))")
    }
  }

  @Test(
    "images: BuildImage runs .inspect/setup.sh and streams it; unchanged branches keep the image; a failed setup keeps the previous one"
  )
  func images() async throws {
    try await withSandboxService { client, data in
      let remote = DemoRepository.remote(in: data)
      try await pushCommit(
        to: remote,
        files: [
          ".inspect/setup.sh": "echo setting up dependencies\nmkdir -p deps && echo installed > deps/marker.txt\n"
        ])
      let built = try await client.build("local/demo")
      #expect(built.steps == [.fetch, .checkout, .setup, .finalize])
      #expect(built.log.contains("setting up dependencies"))
      let image = built.result.image
      #expect(image.state == .ready)
      #expect(image.setupRan)
      #expect(image.branch == "main")
      #expect(image.timings["setup"] != nil && image.timings["checkout"] != nil)
      #expect(image.sizeBytes > 0)
      #expect(!built.result.unchanged)
      // New sandboxes start from it: the setup's output is in their workspace.
      let sandbox = try await client.create(branch: "")
      #expect(sandbox.imageID == image.id)
      #expect(try await client.run(sandbox.id, ["cat", "deps/marker.txt"]).text == "installed\n")
      // The branch did not move: the image stays.
      let again = try await client.build("local/demo")
      #expect(again.result.unchanged)
      #expect(again.result.image.id == image.id)
      // A setup that fails: the image is FAILED with the reason, the previous one stays in use.
      try await pushCommit(to: remote, files: [".inspect/setup.sh": "echo about to fail >&2\nexit 3\n"])
      let failed = try await client.build("local/demo")
      #expect(failed.result.image.state == .failed)
      #expect(failed.result.image.error.contains("exited 3"))
      #expect(failed.result.image.error.contains("about to fail"))
      let listed = try await client.listImages(.with { $0.repository = "local/demo" }).images
      #expect(listed.first?.id == failed.result.image.id)
      #expect(listed.first(where: { $0.state == .ready })?.id == image.id)
      let next = try await client.create(session: "ses-after-failure", branch: "")
      #expect(next.imageID == image.id)
      #expect(await statusCode { _ = try await client.build("not a repository") } == .invalidArgument)
      #expect(await statusCode { _ = try await client.build("local/missing") } == .notFound)
      #expect(await statusCode { _ = try await client.build("local/demo", branch: "no-such-branch") } == .notFound)
    }
  }

  @Test("only the newest three READY images of a repository are kept")
  func imageRetention() async throws {
    try await withSandboxService { client, data in
      var built: [String] = []
      for _ in 0..<5 { built.append(try await client.build("local/demo", force: true).result.image.id) }
      let ready = try await client.listImages(.with { $0.repository = "local/demo" }).images.filter {
        $0.state == .ready
      }
      #expect(ready.map(\.id) == Array(built.suffix(3).reversed()))
      for id in built.prefix(2) {
        #expect(!FileManager.default.fileExists(atPath: data.appendingPathComponent("images/\(id)").path))
      }
    }
  }

  @Test("terminate twice succeeds; a terminated sandbox answers FAILED_PRECONDITION; lists and pools are reported")
  func lifecycle() async throws {
    try await withSandboxService(environment: [:]) { client, data in
      let sandbox = try await client.create(session: "ses-life")
      let listed = try await client.listSandboxes(.with { $0.sessionID = "ses-life" })
      #expect(listed.sandboxes.map(\.id) == [sandbox.id])
      #expect(listed.sandboxes.first?.state == .ready || listed.sandboxes.first?.state == .syncing)
      _ = try await client.terminate(.with { $0.sandboxID = sandbox.id })
      _ = try await client.terminate(.with { $0.sandboxID = sandbox.id })
      #expect(await statusCode { _ = try await client.run(sandbox.id, ["true"]) } == .failedPrecondition)
      #expect(await statusCode { _ = try await client.terminate(.with { $0.sandboxID = "sbx-nope" }) } == .notFound)
      try await waitFor {
        try await client.warmPoolStatus(.init()).pools.first { $0.repository == "local/demo" }?.ready == 2
      }
      let claimed = try await client.create(session: "ses-warm")
      #expect(claimed.source == .warmPool)
      let pools = try await client.warmPoolStatus(.with { $0.repository = "local/demo" })
      #expect(pools.pools.first?.claimsTotal == 1)
      #expect(pools.pools.first?.targetSize == 2)
      _ = data
    }
  }

  @Test("after the service stops, none of its sandboxes' cgroups, mounts or directories remain")
  func nothingLeftBehind() async throws {
    let (created, data) = try await withSandboxService { client, data in
      var ids: [String] = []
      for index in 0..<3 {
        let sandbox = try await client.create(session: "ses-left-\(index)")
        _ = try await client.run(sandbox.id, ["true"])
        ids.append(sandbox.id)
      }
      _ = try await client.terminate(.with { $0.sandboxID = ids[0] })
      // Warm sandboxes and reserved launchers exist too by now: every sandbox directory counts.
      try await waitFor { await ((try? client.warmPoolStatus(.init()).pools.first?.ready) ?? 0) == 2 }
      let all = try FileManager.default.contentsOfDirectory(atPath: data.appendingPathComponent("sandboxes").path)
      return (Array(Set(ids + all.filter { $0.hasPrefix("sbx-") })), data)
    }
    let cgroups = CgroupSupport.detect()
    let parents: [URL] =
      switch cgroups {
      case .v1(let parents): Array(parents.values)
      case .v2(let parent): [parent]
      case .none: []
      }
    for parent in parents {
      let names = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
      for id in created { #expect(!names.contains(id), "\(parent.path)/\(id) remains") }
    }
    let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
    #expect(!mounts.contains(data.path))
  }
}

/// Commits `files` (path → content) on top of the remote's main branch and pushes it.
func pushCommit(to remote: URL, files: [String: String]) async throws {
  let work = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-push-\(UUID().uuidString)")
  defer { try? FileManager.default.removeItem(at: work) }
  try await Git.run(["clone", "--quiet", remote.path, work.path])
  for (path, content) in files {
    let url = work.appendingPathComponent(path)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try content.write(to: url, atomically: true, encoding: .utf8)
  }
  let identity = [
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
  ]
  try await Git.run(["-C", work.path, "add", "--all"])
  try await Git.run(["-C", work.path, "commit", "--quiet", "-m", "test files"], environment: identity)
  try await Git.run(["-C", work.path, "push", "--quiet", "origin", "HEAD:main"])
}
