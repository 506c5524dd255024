import Foundation
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Testing

@testable import SandboxService

/// A data directory with the demo repository's remote, and a local driver over it.
struct SandboxFixture {
  let directory: TemporaryDirectory
  let driver: LocalDriver
  let repository = try! RepositoryName("local/demo")

  /// - Parameter extraFiles: files (path → text) added to the demo repository's first commit.
  init(extraFiles: [String: String] = [:]) throws {
    directory = try TemporaryDirectory("inspect-sandbox")
    var source = try #require(DemoRepository.source(environment: [:], start: URL(fileURLWithPath: #filePath)))
    if !extraFiles.isEmpty {
      let copy = directory.url.appendingPathComponent("source", isDirectory: true)
      try FileManager.default.copyItem(at: source, to: copy)
      for (path, text) in extraFiles {
        let file = copy.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: file, atomically: true, encoding: .utf8)
      }
      source = copy
    }
    try DemoRepository.ensureRemote(in: directory.url, from: source)
    driver = LocalDriver(paths: SandboxPaths(directory.url), logger: Logger(label: "test"))
  }

  /// A new sandbox of the demo repository's main branch.
  func makeSandbox(limits: SandboxLimits? = nil) async throws -> LocalSandbox {
    let image = try await driver.image(for: repository, branch: "inspect/none", fallback: "main")
    return try #require(
      try await driver.createSandbox(from: image, repository: repository, limits: limits) as? LocalSandbox)
  }

  func withSandbox<T>(limits: SandboxLimits? = nil, _ body: (LocalSandbox) async throws -> T) async throws -> T {
    let sandbox = try await makeSandbox(limits: limits)
    let result: Result<T, any Error>
    do {
      result = .success(try await body(sandbox))
    } catch {
      result = .failure(error)
    }
    await sandbox.terminate()
    await driver.reserve.close()
    directory.remove()
    return try result.get()
  }
}

@Suite("Sandboxes on the local driver: isolation, files, commands and git", .serialized)
struct SandboxTests {
  @Test("inside a sandbox only lo exists, pid 1 is not the host's init, and writes stay out of the image")
  func isolation() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      let interfaces = try await sandbox.exec(
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", timeout: .seconds(10))
      #expect(String(decoding: interfaces.stdout, as: UTF8.self).split(separator: "\n") == ["lo"])
      let init1 = try await sandbox.exec("tr '\\0' ' ' < /proc/1/cmdline", timeout: .seconds(10))
      let hostInit = (try? String(contentsOfFile: "/proc/1/cmdline", encoding: .utf8)) ?? ""
      #expect(!String(decoding: init1.stdout, as: UTF8.self).isEmpty)
      #expect(String(decoding: init1.stdout, as: UTF8.self) != hostInit.replacingOccurrences(of: "\0", with: " "))
      let write = try await sandbox.exec("echo scratch > made-in-sandbox.txt", timeout: .seconds(10))
      #expect(write.succeeded)
      let imageFile = fixture.driver.paths.image(sandbox.image.id).appendingPathComponent(
        "workspace/made-in-sandbox.txt")
      #expect(!FileManager.default.fileExists(atPath: imageFile.path))
      #expect(FileManager.default.fileExists(atPath: sandbox.merged.appendingPathComponent("made-in-sandbox.txt").path))
      let nonce = try await sandbox.exec("cat /inspect/nonce", timeout: .seconds(10))
      #expect(
        String(decoding: nonce.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
          == sandbox.image.nonce)
      let remount = try await sandbox.exec("mount -o remount,rw /inspect", timeout: .seconds(10))
      #expect(!remount.succeeded)
      // A server on the host's loopback, which the sandbox must not reach.
      let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
      defer { close(server) }
      var address = sockaddr_in()
      address.sin_family = sa_family_t(AF_INET)
      address.sin_addr.s_addr = inet_addr("127.0.0.1")
      var length = socklen_t(MemoryLayout<sockaddr_in>.size)
      let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          bind(server, $0, length) == 0 && getsockname(server, $0, &length) == 0
        }
      }
      #expect(bound && listen(server, 8) == 0)
      let port = Int(UInt16(bigEndian: address.sin_port))
      let network = try await sandbox.exec(
        "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", \(port)), 2)'",
        timeout: .seconds(10))
      #expect(!network.succeeded)
      #expect(accept(server, nil, nil) < 0, "the sandbox reached a server on the host's loopback")
    }
  }

  @Test("a sandbox sees neither another sandbox's files nor the host's processes")
  func otherSandboxes() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { first in
      let second = try await fixture.makeSandbox()
      let secret = try await first.exec("echo secret-of-the-first > secret.txt", timeout: .seconds(10))
      #expect(secret.succeeded)
      let hostPath = first.merged.appendingPathComponent("secret.txt").path
      let upperPath = first.upper.appendingPathComponent("secret.txt").path
      let attempts = try await second.exec(
        "cat \(hostPath) \(upperPath) /proc/\(first.process.initPID)/root/workspace/secret.txt 2>&1; "
          + "cat /workspace/secret.txt /tmp/secret.txt 2>&1; ls /proc | grep -c '^[0-9]'",
        timeout: .seconds(30))
      let output = String(decoding: attempts.stdout, as: UTF8.self)
      #expect(!output.contains("secret-of-the-first"), "\(output)")
      // Only the sandbox's own processes: init, the shell, ls and grep.
      let processes = Int(output.split(separator: "\n").last ?? "") ?? 99
      #expect(processes <= 5, "\(output)")
      await second.terminate()
    }
  }

  @Test("the demo's tests fail in a fresh sandbox, and a command that outlives its timeout is killed")
  func commands() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      let tests = try await sandbox.exec("python3 -m unittest", timeout: .seconds(60))
      #expect(tests.exitCode == 1)
      #expect(tests.combinedText.contains("FAILED (errors=1)"))
      let slow = try await sandbox.exec("sleep 30", timeout: .milliseconds(300))
      #expect(slow.timedOut)
      #expect(slow.duration < .seconds(5))
    }
  }

  @Test("files stay inside the workspace: absolute paths and .. are INVALID_ARGUMENT, symlinks out PERMISSION_DENIED")
  func confinement() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      func refusal(_ body: () throws -> Void) -> SandboxError? {
        do {
          try body()
          return nil
        } catch let error as SandboxError {
          return error
        } catch {
          return .failed("\(error)")
        }
      }
      func isInvalid(_ error: SandboxError?) -> Bool { if case .invalid = error { true } else { false } }
      func isDenied(_ error: SandboxError?) -> Bool { if case .permissionDenied = error { true } else { false } }
      #expect(isInvalid(refusal { _ = try sandbox.readFile("/etc/passwd", offset: 0, limit: 0) }))
      #expect(isInvalid(refusal { _ = try sandbox.readFile("../../etc/passwd", offset: 0, limit: 0) }))
      #expect(isInvalid(refusal { _ = try sandbox.readFile("a/../../x", offset: 0, limit: 0) }))
      #expect(
        isInvalid(
          refusal { try sandbox.writeFile("../escape.txt", content: Data("x".utf8), mode: nil, createParents: true) }))
      // Symbolic links made inside the sandbox that lead out: to a host path, by `..`, and a
      // directory link used as a parent when creating directories.
      let links = try await sandbox.exec(
        "ln -s /etc escape && ln -s ../../../../../../etc/passwd up && ln -s / root", timeout: .seconds(10))
      #expect(links.succeeded)
      #expect(isDenied(refusal { _ = try sandbox.readFile("escape/passwd", offset: 0, limit: 0) }))
      #expect(isDenied(refusal { _ = try sandbox.readFile("up", offset: 0, limit: 0) }))
      #expect(isDenied(refusal { _ = try sandbox.listFiles("root", recursive: false, maxEntries: 0) }))
      #expect(
        isDenied(
          refusal {
            try sandbox.writeFile("root/tmp/inspect-escape", content: Data("x".utf8), mode: nil, createParents: true)
          }))
      #expect(!FileManager.default.fileExists(atPath: "/tmp/inspect-escape"))
      #expect(
        isDenied(
          refusal {
            try sandbox.writeFile("escape/inspect-escape", content: Data("x".utf8), mode: nil, createParents: false)
          }))
      // Inside the workspace everything works, absolute /workspace paths included.
      #expect(try sandbox.readFile("/workspace/calc.py", offset: 0, limit: 0).content.count > 0)
      try sandbox.writeFile("new/dir/file.txt", content: Data("hello".utf8), mode: 0o600, createParents: true)
      let seen = try await sandbox.exec("cat new/dir/file.txt; stat -c %a new/dir/file.txt", timeout: .seconds(10))
      #expect(String(decoding: seen.stdout, as: UTF8.self) == "hello600\n")
      let part = try sandbox.readFile("new/dir/file.txt", offset: 1, limit: 3)
      #expect(String(decoding: part.content, as: UTF8.self) == "ell")
      #expect(part.size == 5 && part.truncated)
      let listing = try sandbox.listFiles("", recursive: true, maxEntries: 0)
      #expect(listing.entries.contains { $0.path == "new/dir/file.txt" && $0.kind == .file && $0.size == 5 })
      #expect(listing.entries.contains { $0.path == "escape" && $0.kind == .symlink })
      #expect(!listing.entries.contains { $0.path.hasPrefix("escape/") || $0.path.hasPrefix("root/") })
      let few = try sandbox.listFiles("", recursive: true, maxEntries: 2)
      #expect(few.entries.count == 2 && few.truncated)
      #expect(isInvalid(refusal { _ = try sandbox.readFile("new", offset: 0, limit: 0) }))
      // A FIFO made in the sandbox is refused at once, not waited on.
      let fifo = try await sandbox.exec("mkfifo pipe", timeout: .seconds(10))
      #expect(fifo.succeeded)
      #expect(isInvalid(refusal { _ = try sandbox.readFile("pipe", offset: 0, limit: 0) }))
      #expect(
        isInvalid(refusal { try sandbox.writeFile("pipe", content: Data("x".utf8), mode: nil, createParents: false) }))
      if case .notFound = refusal({ _ = try sandbox.readFile("missing.txt", offset: 0, limit: 0) }) {
      } else {
        Issue.record("a missing file should be NOT_FOUND")
      }
    }
  }

  @Test("commit and push: the session branch in the remote has the change, by the prompt's author")
  func commitAndPush() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      let calc = sandbox.merged.appendingPathComponent("calc.py")
      let fixed = try String(contentsOf: calc, encoding: .utf8)
        .replacingOccurrences(
          of: "    return sum(numbers) / len(numbers)", with: "    return sum(numbers) / len(numbers) if numbers else 0"
        )
      try fixed.write(to: calc, atomically: true, encoding: .utf8)
      let pushed = try await sandbox.commitAndPush(
        branch: "inspect/ses-0-test", message: "Average of nothing is 0",
        author: ("Ada", "ada@example.com"), committer: ("Inspect", "bot@inspect.local"))
      let result = try #require(pushed)
      let remote = DemoRepository.remote(in: fixture.directory.url).path
      let log = try await Git.run([
        "--git-dir", remote, "log", "-1", "--format=%an <%ae> | %cn | %s", "inspect/ses-0-test",
      ])
      #expect(log == "Ada <ada@example.com> | Inspect | Average of nothing is 0")
      #expect(try await Git.run(["--git-dir", remote, "rev-parse", "inspect/ses-0-test"]) == result.commit)
      let nothing = try await sandbox.commitAndPush(
        branch: "inspect/ses-0-test", message: "again",
        author: ("Ada", "ada@example.com"), committer: ("Inspect", "bot@inspect.local"))
      #expect(nothing == nil)
    }
  }

  @Test("a background process outlives the command that started it, and that command still returns at once")
  func backgroundProcess() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      // The loop keeps the command's output pipe open; the command must end anyway.
      let start = try await sandbox.exec(
        "(while true; do date +%s%N > /tmp/tick.new; mv /tmp/tick.new /tmp/tick; sleep 0.05; done) & while [ ! -e /tmp/tick ]; do sleep 0.01; done; echo started",
        timeout: .seconds(10))
      #expect(start.succeeded)
      #expect(start.duration < .seconds(5))
      #expect(String(decoding: start.stdout, as: UTF8.self).contains("started"))
      let ticks = try await sandbox.exec("cat /tmp/tick; sleep 0.3; cat /tmp/tick", timeout: .seconds(10))
      let values = String(decoding: ticks.stdout, as: UTF8.self).split(separator: "\n")
      #expect(values.count == 2)
      #expect(values.first != values.last)
    }
  }

  @Test("terminating a sandbox kills its whole process tree, unmounts it and removes its cgroups")
  func terminateCleansUp() async throws {
    let fixture = try SandboxFixture()
    let sandbox = try await fixture.makeSandbox()
    _ = try await sandbox.exec("sleep 300 & sleep 301 & echo ok", timeout: .seconds(10))
    let members = sandbox.process.cgroup.pids
    if case .none = fixture.driver.cgroups {
      Issue.record("this machine should have cgroups for sandboxes: \(fixture.driver.cgroups)")
    } else {
      // init and the two sleeps.
      #expect(members.count >= 3)
      #expect(members.contains(sandbox.process.initPID))
    }
    await sandbox.terminate()
    #expect(!ChildProcess.isAlive(sandbox.process.initPID))
    for pid in members { #expect(!ChildProcess.isAlive(pid)) }
    let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
    #expect(!mounts.contains(sandbox.merged.path))
    for directory in sandbox.process.cgroup.directories {
      #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
    #expect(!FileManager.default.fileExists(atPath: sandbox.directory.path))
    await fixture.driver.reserve.close()
    fixture.directory.remove()
  }

  @Test(
    "after a crash, recovery kills what ran, saves a claimed sandbox's work as a snapshot, unmounts and removes the rest"
  )
  func crashRecovery() async throws {
    let fixture = try SandboxFixture()
    let sandbox = try await fixture.makeSandbox()
    sandbox.claimed(by: "ses-crashed", branch: "inspect/ses-crashed")
    let work = try await sandbox.exec(
      "echo unsaved > work.txt; sleep 300 > /dev/null 2>&1 & echo ok", timeout: .seconds(10))
    #expect(work.succeeded)
    let pids = sandbox.process.cgroup.pids
    #expect(pids.count >= 2)
    sandbox.flushState()
    let paths = fixture.driver.paths
    try FileManager.default.createDirectory(at: paths.snapshots, withIntermediateDirectories: true)
    try Data("half".utf8).write(to: paths.snapshots.appendingPathComponent("snp-half.tar.zst.partial"))
    try Data("orphan".utf8).write(to: paths.snapshotArchive("snp-orphan"))
    // The crash: nothing is terminated. A new driver over the same data directory recovers.
    let recovering = LocalDriver(paths: paths, logger: Logger(label: "test"), reserve: 0)
    let report = await recovering.recover()
    #expect(report.sandboxes.contains(sandbox.id))
    #expect(report.failures.isEmpty, "\(report.failures)")
    for pid in pids { #expect(!ChildProcess.isAlive(pid), "pid \(pid) survived recovery") }
    let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
    #expect(!mounts.contains(sandbox.merged.path))
    for directory in sandbox.process.cgroup.directories {
      #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
    #expect(!FileManager.default.fileExists(atPath: sandbox.directory.path))
    #expect(Set(report.incompleteSnapshots) == ["snp-half.tar.zst.partial", "snp-orphan.tar.zst"])
    let saved = try #require(report.snapshots.first { $0.sandbox == sandbox.id })
    #expect(saved.session == "ses-crashed")
    let record = try #require(recovering.snapshotRecord(saved.snapshot))
    #expect(record.branch == "inspect/ses-crashed")
    let restored = try await recovering.restoreSandbox(from: record, limits: nil)
    #expect(
      String(decoding: try restored.readFile("work.txt", offset: 0, limit: 0).content, as: UTF8.self) == "unsaved\n")
    await restored.terminate()
    // The first driver's reserved launchers were left behind too, and are gone.
    #expect((try? FileManager.default.contentsOfDirectory(atPath: paths.sandboxes.path))?.isEmpty ?? true)
    // The "crashed" driver's reserve may have refilled meanwhile; close it like a new start would.
    await fixture.driver.reserve.close()
    fixture.directory.remove()
  }

  @Test("a fork bomb stops at the sandbox's pids limit and the host stays healthy")
  func forkBomb() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox(limits: SandboxLimits(memoryBytes: 256 << 20, maxPids: 64, cpuMillis: 1000)) {
      sandbox in
      let bomb = try await sandbox.exec(
        "bomb() { bomb | bomb & }; bomb; sleep 1; ls /proc | grep -c '^[0-9]'",
        timeout: .seconds(10))
      let counted =
        Int(
          String(decoding: bomb.stdout, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? "") ?? 0
      #expect(counted <= 64, "processes seen inside: \(counted)")
      #expect(sandbox.process.cgroup.pids.count <= 64)
      // The host can still start processes.
      let host = try await Git.run(["--version"])
      #expect(host.hasPrefix("git version"))
    }
  }

  @Test("allocating past the memory limit kills the allocation, not the host")
  func memoryLimit() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox(limits: SandboxLimits(memoryBytes: 64 << 20, maxPids: 64, cpuMillis: 1000)) {
      sandbox in
      let hog = try await sandbox.exec(
        "python3 -c 'x = bytearray(512 * 1024 * 1024); print(len(x))'", timeout: .seconds(30))
      #expect(!hog.succeeded)
      #expect(!String(decoding: hog.stdout, as: UTF8.self).contains("536870912"))
      // The sandbox itself survives and runs the next command.
      let next = try await sandbox.exec("echo alive", timeout: .seconds(10))
      #expect(String(decoding: next.stdout, as: UTF8.self) == "alive\n")
    }
  }

  @Test("a program that does not exist fails to start with the reason; the sandbox runs the next one")
  func missingProgram() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      await #expect(throws: SandboxError.self) {
        try await sandbox.run(["/no/such/program"], timeout: .seconds(5))
      }
      let command = try sandbox.start(["/no/such/program"], environment: [:], directory: "")
      var failure: String?
      for await event in command.events { if case .failed(let reason) = event { failure = reason } }
      #expect(failure == "No such file or directory")
      let next = try await sandbox.exec("echo $((6 * 7))", timeout: .seconds(10))
      #expect(String(decoding: next.stdout, as: UTF8.self) == "42\n")
    }
  }

  @Test("when a sandbox's init dies, running commands end with the reason instead of hanging")
  func initDies() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      let command = try sandbox.start(["/bin/sh", "-c", "sleep 300"], environment: [:], directory: "")
      kill(sandbox.process.initPID, SIGKILL)
      var last: CommandEvent?
      for await event in command.events { last = event }
      guard case .failed(let reason) = last else {
        Issue.record("expected .failed, got \(String(describing: last))")
        return
      }
      #expect(reason.contains("init exited"))
      #expect(!sandbox.process.isAlive)
    }
  }
}
