import ArgumentParser
import Dispatch
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

#if canImport(Glibc)
  import Glibc
#endif

typealias SandboxClient = Inspect_Sandbox_V1_SandboxService.Client<HTTP2ClientTransport.Posix>

struct SandboxBenchOptions: ParsableArguments {
  @Option(help: "Timed runs.")
  var runs = 40

  @Option(help: "SandboxService's --log-level.")
  var logLevel = "warning"

  @Flag(help: "Keep the temporary directory (data directory and the service's log) afterwards.")
  var keep = false
}

/// A real SandboxService process (local driver: overlayfs, bubblewrap, cgroups) over a fresh data
/// directory holding the demo repository's remote, a gRPC client to it, and the raw primitives
/// its figures are compared with, measured in the same run:
/// - the floor: mount an overlay of the image, run bubblewrap `true` in it (no init, no control
///   socket, no gRPC);
/// - the naive way: `cp -a` the image, run bubblewrap in the copy.
struct SandboxBench: Sendable {
  let service: ServiceProcess
  let client: SandboxClient
  let workDirectory: URL
  var dataDirectory: URL { service.dataDirectory }

  static func run(
    _ options: SandboxBenchOptions, poolSize: Int, _ body: @Sendable (SandboxBench) async throws -> String
  ) async throws {
    guard getuid() == 0 else { throw BenchError("the sandbox benchmarks need root (overlayfs, cgroups)") }
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-bench-sandbox-\(getpid())")
    let data = work.appendingPathComponent("data", isDirectory: true)
    try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
    defer { if !options.keep { try? FileManager.default.removeItem(at: work) } }
    guard
      let source = DemoRepository.source(
        environment: ProcessInfo.processInfo.environment,
        start: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
    else { throw BenchError("cannot find examples/demo-repo (run from the repository, or set INSPECT_DEMO_SOURCE)") }
    try DemoRepository.ensureRemote(in: data, from: source)
    let binaries = try await BinaryDirectory.resolve()
    let service = try await ServiceProcess.start(
      "SandboxService", binDirectory: binaries, dataDirectory: data,
      environment: ["INSPECT_SANDBOX_POOL_SIZE": "\(poolSize)"], logLevel: options.logLevel)
    defer { if options.keep { progress("kept \(work.path)") } }
    let line: String
    do {
      line = try await withGRPCClient(
        transport: .http2NIOPosix(
          target: .ipv4(host: service.grpc.host, port: service.grpc.port), transportSecurity: .plaintext)
      ) { grpc in
        try await body(SandboxBench(service: service, client: SandboxClient(wrapping: grpc), workDirectory: work))
      }
    } catch {
      await service.stop()
      throw BenchError("\(error)\n\(ServiceProcess.tail(of: service.log))")
    }
    await service.stop()
    print(line)
  }

  // MARK: - Through the service

  func create(session: String, snapshot: String = "") async throws -> Inspect_Sandbox_V1_Sandbox {
    try await client.createSandbox(
      .with {
        $0.repository = "local/demo"
        $0.sessionID = session
        $0.snapshotID = snapshot
      }
    ).sandbox
  }

  /// Runs `echo <nonce>` in the sandbox and checks the output; the command's own duration as
  /// the service measured it (start to exit inside the sandbox).
  @discardableResult
  func echo(_ sandboxID: String) async throws -> Duration {
    let nonce = "nonce-\(UInt64.random(in: 1...UInt64.max))"
    let start = Inspect_Sandbox_V1_ExecRequest.with {
      $0.start = .with {
        $0.sandboxID = sandboxID
        $0.argv = ["echo", nonce]
      }
    }
    let (output, ran) = try await client.exec(
      requestProducer: { try await $0.write(start) },
      onResponse: { response in
        var output = Data()
        var ran = Duration.zero
        for try await message in response.messages {
          switch message.kind {
          case .stdout(let data): output.append(data)
          case .exit(let exit): ran = exit.duration.duration
          default: break
          }
        }
        return (output, ran)
      })
    guard String(decoding: output, as: UTF8.self) == nonce + "\n" else {
      throw BenchError("the sandbox echoed \(String(decoding: output, as: UTF8.self).debugDescription), not \(nonce)")
    }
    return ran
  }

  func terminate(_ sandboxID: String, snapshot: Bool = false) async throws -> Inspect_Sandbox_V1_Snapshot {
    try await client.terminate(
      .with {
        $0.sandboxID = sandboxID
        $0.snapshot = snapshot
      }
    ).snapshot
  }

  /// The image the service built (its `workspace/` directory).
  func imageWorkspace() throws -> URL {
    let images = dataDirectory.appendingPathComponent("images")
    guard
      let id = try FileManager.default.contentsOfDirectory(atPath: images.path).first(where: {
        $0.hasPrefix("img-") && !$0.hasSuffix(".json")
      })
    else { throw BenchError("no image under \(images.path)") }
    return images.appendingPathComponent("\(id)/workspace")
  }

  // MARK: - Raw primitives

  /// A fresh scratch directory under the work directory.
  func scratch() throws -> URL {
    let directory = workDirectory.appendingPathComponent("scratch/\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
  }

  /// The floor: overlay mount of `image` + bubblewrap `true` in it. Returns the time taken;
  /// the unmount and removal afterwards are not timed.
  func floor(image: URL) async throws -> Duration {
    let directory = try scratch()
    for name in ["upper", "work", "merged"] {
      try FileManager.default.createDirectory(
        at: directory.appendingPathComponent(name), withIntermediateDirectories: true)
    }
    let merged = directory.appendingPathComponent("merged").path
    let clock = ContinuousClock()
    let started = clock.now
    let options =
      "lowerdir=\(image.path),upperdir=\(directory.appendingPathComponent("upper").path),workdir=\(directory.appendingPathComponent("work").path)"
    guard mount("overlay", merged, "overlay", 0, options) == 0 else {
      throw BenchError("overlay mount failed: \(String(cString: strerror(errno)))")
    }
    let code = await Self.spawnAndWait(["/usr/bin/bwrap"] + Self.bwrapArguments(workspace: merged) + ["/usr/bin/true"])
    let elapsed = clock.now - started
    _ = umount2(merged, 0)
    try? FileManager.default.removeItem(at: directory)
    guard code == 0 else { throw BenchError("bubblewrap true exited \(code)") }
    return elapsed
  }

  /// The naive way: `cp -a` of `image` (then `prepare`, untimed work is none), bubblewrap `echo`.
  func naive(image: URL, prepare: (@Sendable (URL) async throws -> Void)? = nil) async throws -> Duration {
    let directory = try scratch()
    let copy = directory.appendingPathComponent("workspace").path
    let clock = ContinuousClock()
    let started = clock.now
    guard await Self.spawnAndWait(["/bin/cp", "-a", image.path, copy]) == 0 else { throw BenchError("cp -a failed") }
    try await prepare?(URL(fileURLWithPath: copy))
    let code = await Self.spawnAndWait(["/usr/bin/bwrap"] + Self.bwrapArguments(workspace: copy) + ["/bin/echo", "x"])
    let elapsed = clock.now - started
    try? FileManager.default.removeItem(at: directory)
    guard code == 0 else { throw BenchError("bubblewrap echo exited \(code)") }
    return elapsed
  }

  /// bubblewrap's namespaces and mounts as the local driver uses them (without its init).
  static func bwrapArguments(workspace: String) -> [String] {
    [
      "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--new-session", "--cap-drop", "ALL",
      "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
      "--symlink", "usr/lib64", "/lib64", "--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
      "--tmpfs", "/tmp", "--bind", workspace, "/workspace", "--chdir", "/workspace",
    ]
  }

  /// posix_spawn (output to /dev/null), then a blocking waitpid off the cooperative pool.
  static func spawnAndWait(_ argv: [String]) async -> Int32 {
    await withCheckedContinuation { continuation in
      DispatchQueue.global().async {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let arguments = argv.map { strdup($0) } + [nil]
        let environment: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/bin:/bin"), nil]
        defer {
          arguments.forEach { free($0) }
          environment.forEach { free($0) }
        }
        var pid: pid_t = 0
        guard posix_spawn(&pid, argv[0], &actions, nil, arguments, environment) == 0 else {
          continuation.resume(returning: -1)
          return
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        continuation.resume(returning: (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f))
      }
    }
  }
}

/// The `bench` line of a latency benchmark: the service's figures beside the floor and naive.
func sandboxLine(_ name: String, service: Samples, floor: Samples, naive: Samples, extra: String = "") -> String {
  let format = { (value: Double) in String(format: "%.2f", value) }
  return
    "bench \(name) p50_ms=\(format(service.p50)) p95_ms=\(format(service.percentileMilliseconds(0.95))) "
    + "floor_p50_ms=\(format(floor.p50)) naive_p50_ms=\(format(naive.p50)) runs=\(service.count)"
    + (extra.isEmpty ? "" : " " + extra)
}
