import ArgumentParser
import Foundation
import InspectKit
import InspectProtos

#if canImport(Glibc)
  import Glibc
#endif

/// `sandbox.claim`: a warm-pool claim (CreateSandbox) to the output of a command chosen at claim
/// time (Exec `echo <nonce>`), timed from a gRPC client. The pool is full before each claim.
struct ClaimBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sandbox.claim", abstract: "Warm-pool claim to a new command's output.")

  @OptionGroup var options: SandboxBenchOptions

  func run() async throws {
    let runs = options.runs
    try await SandboxBench.run(options, poolSize: 2) { bench in
      try await bench.echo(try await bench.create(session: "ses-warmup").id)
      var (service, floor, naive) = (Samples(), Samples(), Samples())
      var (claims, commands, calls, ran) = (Samples(), Samples(), Samples(), Samples())
      for run in 0..<runs {
        try await waitForFullPool(bench)
        _ = try await measure(&calls) { try await bench.client.warmPoolStatus(.init()) }
        let sandbox = try await measure(&service) {
          let sandbox = try await measure(&claims) { try await bench.create(session: "ses-claim-\(run)") }
          ran.append(try await measure(&commands) { try await bench.echo(sandbox.id) })
          return sandbox
        }
        guard sandbox.source == .warmPool else { throw BenchError("claim \(run) did not come from the pool") }
        _ = try await bench.terminate(sandbox.id)
        // The baselines run once the pool's refill is over, not beside it.
        try await waitForFullPool(bench)
        let image = try bench.imageWorkspace()
        floor.append(try await bench.floor(image: image))
        naive.append(try await bench.naive(image: image))
      }
      return sandboxLine(
        "sandbox.claim", service: service, floor: floor, naive: naive,
        extra: String(
          format: "create_rpc_p50_ms=%.2f exec_p50_ms=%.2f command_p50_ms=%.2f unary_rpc_p50_ms=%.2f", claims.p50,
          commands.p50, ran.p50, calls.p50))
    }
  }

  private func waitForFullPool(_ bench: SandboxBench) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
      let pool = try await bench.client.warmPoolStatus(.with { $0.repository = "local/demo" }).pools.first
      if let pool, pool.ready == pool.targetSize, pool.creating == 0 { return }
      try await Task.sleep(for: .milliseconds(5))
    }
    throw BenchError("the warm pool did not fill within 30 s")
  }
}

/// `sandbox.create`: a cold create from the image (no pool) to the first command's output.
struct CreateBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sandbox.create", abstract: "Cold create from the image to a command's output.")

  @OptionGroup var options: SandboxBenchOptions

  func run() async throws {
    let runs = options.runs
    try await SandboxBench.run(options, poolSize: 0) { bench in
      _ = try await bench.terminate(try await bench.create(session: "ses-warmup").id)
      var (service, floor, naive) = (Samples(), Samples(), Samples())
      for run in 0..<runs {
        let sandbox = try await measure(&service) {
          let sandbox = try await bench.create(session: "ses-create-\(run)")
          try await bench.echo(sandbox.id)
          return sandbox
        }
        guard sandbox.source == .image else { throw BenchError("create \(run) did not come from the image") }
        _ = try await bench.terminate(sandbox.id)
        let image = try bench.imageWorkspace()
        floor.append(try await bench.floor(image: image))
        naive.append(try await bench.naive(image: image))
      }
      return sandboxLine("sandbox.create", service: service, floor: floor, naive: naive)
    }
  }
}

/// Makes a small writable layer: a changed file, two new ones, a deleted one.
private func smallChanges(_ bench: SandboxBench, _ sandboxID: String) async throws {
  for (path, text) in [
    "calc.py": "def average(numbers):\n    return sum(numbers) / len(numbers) if numbers else 0\n",
    "notes/plan.md": "# plan\n- fix average\n", "notes/todo.txt": "nothing\n",
  ] {
    _ = try await bench.client.writeFile(
      .with {
        $0.sandboxID = sandboxID
        $0.path = path
        $0.content = Data(text.utf8)
        $0.createParents = true
      })
  }
}

/// `sandbox.restore`: restore from a small snapshot to the first command's output.
struct RestoreBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sandbox.restore", abstract: "Restore from a small snapshot to a command's output.")

  @OptionGroup var options: SandboxBenchOptions

  func run() async throws {
    let runs = options.runs
    try await SandboxBench.run(options, poolSize: 0) { bench in
      let original = try await bench.create(session: "ses-restore")
      try await smallChanges(bench, original.id)
      let snapshot = try await bench.terminate(original.id, snapshot: true)
      let archive = bench.dataDirectory.appendingPathComponent("snapshots/\(snapshot.id).tar.zst")
      var (service, floor, naive) = (Samples(), Samples(), Samples())
      for run in 0..<runs {
        let sandbox = try await measure(&service) {
          let sandbox = try await bench.create(session: "ses-restore", snapshot: snapshot.id)
          try await bench.echo(sandbox.id)
          return sandbox
        }
        guard sandbox.source == .snapshot else { throw BenchError("restore \(run) did not come from the snapshot") }
        _ = try await bench.terminate(sandbox.id)
        let image = try bench.imageWorkspace()
        floor.append(try await bench.floor(image: image))
        // Naive: copy the image, unpack the layer over the copy.
        naive.append(
          try await bench.naive(image: image) { copy in
            let code = await SandboxBench.spawnAndWait([
              "/usr/bin/tar", "--extract", "--zstd", "--file", archive.path, "--directory", copy.path,
            ])
            guard code == 0 else { throw BenchError("tar -x exited \(code)") }
          })
      }
      return sandboxLine(
        "sandbox.restore", service: service, floor: floor, naive: naive, extra: "snapshot_bytes=\(snapshot.sizeBytes)")
    }
  }
}

/// `sandbox.snapshot`: Snapshot of a sandbox with a small writable layer.
struct SnapshotBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sandbox.snapshot", abstract: "Snapshot of a small writable layer.")

  @OptionGroup var options: SandboxBenchOptions

  func run() async throws {
    let runs = options.runs
    try await SandboxBench.run(options, poolSize: 0) { bench in
      let sandbox = try await bench.create(session: "ses-snapshot")
      try await smallChanges(bench, sandbox.id)
      let merged = bench.dataDirectory.appendingPathComponent("sandboxes/\(sandbox.id)/merged")
      var (service, floor, naive) = (Samples(), Samples(), Samples())
      var size: UInt64 = 0
      for _ in 0..<runs {
        let snapshot = try await measure(&service) {
          try await bench.client.snapshot(.with { $0.sandboxID = sandbox.id }).snapshot
        }
        size = snapshot.sizeBytes
        floor.append(try await bench.floor(image: try bench.imageWorkspace()))
        // Naive: copy the whole workspace.
        let target = try bench.scratch().appendingPathComponent("copy")
        let clock = ContinuousClock()
        let started = clock.now
        guard await SandboxBench.spawnAndWait(["/bin/cp", "-a", merged.path, target.path]) == 0 else {
          throw BenchError("cp -a failed")
        }
        naive.append(clock.now - started)
      }
      _ = try await bench.terminate(sandbox.id)
      return sandboxLine(
        "sandbox.snapshot", service: service, floor: floor, naive: naive, extra: "snapshot_bytes=\(size)")
    }
  }
}

/// `sandbox.density`: idle sandboxes created through the service; the memory each takes (its
/// cgroup's charge — init, page cache, kernel objects — plus its bubblewrap's resident memory),
/// and how many would fit in the memory available when the run started.
struct DensityBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sandbox.density", abstract: "Memory per idle sandbox and how many fit.")

  @Option(help: "Idle sandboxes to create.")
  var count = 100

  @OptionGroup var options: SandboxBenchOptions

  func run() async throws {
    let count = self.count
    try await SandboxBench.run(options, poolSize: 0) { bench in
      let available = try MemoryInfo.availableBytes()
      var ids: [String] = []
      for index in 0..<count {
        let sandbox = try await bench.create(session: "ses-density-\(index)")
        try await bench.echo(sandbox.id)
        ids.append(sandbox.id)
      }
      try await Task.sleep(for: .seconds(1))
      let groups = try MemoryInfo.sandboxGroups(servicePID: bench.service.child.pid)
      var charged: UInt64 = 0
      for id in ids { charged += try MemoryInfo.charge(of: groups.appendingPathComponent(id)) }
      let bwrap = MemoryInfo.childrenResidentBytes(of: bench.service.child.pid, named: "bwrap")
      let each = Double(charged + bwrap.bytes) / Double(count)
      for id in ids { _ = try await bench.terminate(id) }
      return String(
        format:
          "bench sandbox.density sandboxes=%d rss_mb_each=%.2f created=%d charged_mb_each=%.2f bwrap_mb_each=%.2f",
        Int(Double(available) / each), each / 1_048_576, count, Double(charged) / Double(count) / 1_048_576,
        Double(bwrap.bytes) / Double(max(bwrap.count, 1)) / 1_048_576)
    }
  }
}

/// Memory figures from `/proc` and the cgroup hierarchy.
enum MemoryInfo {
  static func availableBytes() throws -> UInt64 {
    let text = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
      let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ UInt64($0) })
    else { throw BenchError("no MemAvailable in /proc/meminfo") }
    return kilobytes * 1024
  }

  /// The directory holding the sandboxes' memory groups: `inspect/` under the service's own
  /// memory cgroup (v1) or its unified group (v2).
  static func sandboxGroups(servicePID: Int32) throws -> URL {
    let text = try String(contentsOfFile: "/proc/\(servicePID)/cgroup", encoding: .utf8)
    for line in text.split(separator: "\n") {
      let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
      guard fields.count == 3 else { continue }
      let path = String(fields[2].drop { $0 == "/" })
      if fields[1].split(separator: ",").contains("memory") {
        return URL(fileURLWithPath: "/sys/fs/cgroup/memory").appendingPathComponent(path).appendingPathComponent(
          "inspect")
      }
    }
    let unified = text.split(separator: "\n").first { $0.hasPrefix("0::") }.map {
      String($0.dropFirst(3).drop { $0 == "/" })
    }
    guard let unified else { throw BenchError("the service has no memory cgroup") }
    return URL(fileURLWithPath: "/sys/fs/cgroup").appendingPathComponent(unified).appendingPathComponent("inspect")
  }

  /// What a memory cgroup is charged (v1 `memory.usage_in_bytes`, v2 `memory.current`).
  static func charge(of group: URL) throws -> UInt64 {
    for file in ["memory.usage_in_bytes", "memory.current"] {
      if let text = try? String(contentsOf: group.appendingPathComponent(file), encoding: .utf8),
        let value = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))
      {
        return value
      }
    }
    throw BenchError("no memory charge in \(group.path)")
  }

  /// The resident memory of `pid`'s children called `name`, and how many there are.
  static func childrenResidentBytes(of pid: Int32, named name: String) -> (bytes: UInt64, count: Int) {
    var total: UInt64 = 0
    var count = 0
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    for task in tasks {
      let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
      for child in children.split(separator: " ") {
        guard (try? String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8))?.hasPrefix(name) == true,
          let status = try? String(contentsOfFile: "/proc/\(child)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ UInt64($0) })
        else { continue }
        total += kilobytes * 1024
        count += 1
      }
    }
    return (total, count)
  }
}
