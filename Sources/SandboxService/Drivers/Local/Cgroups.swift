import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Limits on one sandbox's processes together.
struct SandboxLimits: Sendable, Equatable, Codable {
  /// Memory (and swap) in bytes; 0 for none.
  var memoryBytes: UInt64 = 2 << 30
  /// Processes and threads; 0 for none.
  var maxPids: UInt32 = 512
  /// CPU in thousandths of a core; 0 for none.
  var cpuMillis: UInt32 = 2000
}

/// Which cgroup hierarchy limits sandboxes on this machine, found once at start.
///
/// cgroup v2 is used when the service's own cgroup may hand `memory`, `pids` and `cpu` to child
/// groups (they are listed in its `cgroup.subtree_control`); otherwise the v1 hierarchies of
/// those controllers (this machine's case: a hybrid layout whose v2 part has none of them);
/// otherwise sandboxes run without limits, and the log says so.
enum CgroupSupport: Sendable, CustomStringConvertible {
  /// One directory per v1 controller, each the parent of the sandboxes' groups.
  case v1(parents: [String: URL])
  case v2(parent: URL)
  case none(reason: String)

  static let controllers = ["memory", "pids", "cpu"]

  var description: String {
    switch self {
    case .v1(let parents):
      "cgroup v1 (\(parents.keys.sorted().joined(separator: ", ")) under \(parents.values.map(\.path).sorted().joined(separator: ", ")))"
    case .v2(let parent): "cgroup v2 (memory, pids, cpu under \(parent.path))"
    case .none(let reason): "no cgroup limits: \(reason)"
    }
  }

  /// The limits actually enforced, for logs and metrics.
  var enforced: [String] {
    switch self {
    case .v1(let parents): Self.controllers.filter { parents[$0] != nil }
    case .v2: Self.controllers
    case .none: []
    }
  }

  var versionLabel: String {
    switch self {
    case .v1: "v1"
    case .v2: "v2"
    case .none: "none"
    }
  }

  /// Looks at `/proc/self/cgroup` and `/sys/fs/cgroup`; `group` names the directory created
  /// under the service's own group for its sandboxes.
  static func detect(root: URL = URL(fileURLWithPath: "/sys/fs/cgroup"), group: String = "inspect") -> CgroupSupport {
    guard let membership = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else {
      return .none(reason: "/proc/self/cgroup is unreadable")
    }
    var v1Paths: [String: String] = [:]
    var v2Path: String?
    for line in membership.split(separator: "\n") {
      let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
      guard fields.count == 3 else { continue }
      if fields[1].isEmpty {
        v2Path = String(fields[2])
      } else {
        for controller in fields[1].split(separator: ",") { v1Paths[String(controller)] = String(fields[2]) }
      }
    }
    // v2: the unified mount is the root itself, or `unified` in a hybrid layout.
    if let v2Path {
      for mount in [root, root.appendingPathComponent("unified")] {
        let own = mount.appendingPathComponent(String(v2Path.drop(while: { $0 == "/" })))
        guard
          let subtree = try? String(
            contentsOf: own.appendingPathComponent("cgroup.subtree_control"), encoding: .utf8)
        else { continue }
        let enabled = Set(subtree.split(whereSeparator: \.isWhitespace).map(String.init))
        if Set(controllers).isSubset(of: enabled) {
          let parent = own.appendingPathComponent(group)
          if (try? FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)) != nil {
            return .v2(parent: parent)
          }
        }
      }
    }
    var parents: [String: URL] = [:]
    for controller in controllers {
      guard let path = v1Paths[controller] else { continue }
      // The hierarchy is mounted under its controllers' names (`cpu` is often `cpu,cpuacct`).
      let mount = root.appendingPathComponent(controller)
      guard FileManager.default.fileExists(atPath: mount.appendingPathComponent("cgroup.procs").path) else { continue }
      let parent = mount.appendingPathComponent(String(path.drop(while: { $0 == "/" }))).appendingPathComponent(group)
      if (try? FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)) != nil {
        parents[controller] = parent
      }
    }
    if parents.isEmpty {
      return .none(reason: "neither cgroup v2 with memory, pids and cpu delegated nor writable v1 hierarchies of them")
    }
    return .v1(parents: parents)
  }

  /// Creates the sandbox's groups with `limits`. Throws when a limit cannot be written.
  func create(_ sandboxID: String, limits: SandboxLimits) throws -> SandboxCgroup {
    var directories: [URL] = []
    func make(_ parent: URL) throws -> URL {
      let directory = parent.appendingPathComponent(sandboxID)
      try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
      directories.append(directory)
      return directory
    }
    do {
      switch self {
      case .v1(let parents):
        if let parent = parents["memory"], limits.memoryBytes > 0 {
          let directory = try make(parent)
          try SandboxCgroup.write(
            "\(limits.memoryBytes)", to: directory.appendingPathComponent("memory.limit_in_bytes"))
          // With swap, the same bound on memory + swap (absent when the kernel accounts no swap).
          let swap = directory.appendingPathComponent("memory.memsw.limit_in_bytes")
          if FileManager.default.fileExists(atPath: swap.path) {
            try SandboxCgroup.write("\(limits.memoryBytes)", to: swap)
          }
        }
        if let parent = parents["pids"], limits.maxPids > 0 {
          let directory = try make(parent)
          try SandboxCgroup.write("\(limits.maxPids)", to: directory.appendingPathComponent("pids.max"))
        }
        if let parent = parents["cpu"], limits.cpuMillis > 0 {
          let directory = try make(parent)
          try SandboxCgroup.write("100000", to: directory.appendingPathComponent("cpu.cfs_period_us"))
          try SandboxCgroup.write(
            "\(UInt64(limits.cpuMillis) * 100)", to: directory.appendingPathComponent("cpu.cfs_quota_us"))
        }
      case .v2(let parent):
        let directory = try make(parent)
        if limits.memoryBytes > 0 {
          try SandboxCgroup.write("\(limits.memoryBytes)", to: directory.appendingPathComponent("memory.max"))
          try? SandboxCgroup.write("0", to: directory.appendingPathComponent("memory.swap.max"))
        }
        if limits.maxPids > 0 {
          try SandboxCgroup.write("\(limits.maxPids)", to: directory.appendingPathComponent("pids.max"))
        }
        if limits.cpuMillis > 0 {
          try SandboxCgroup.write(
            "\(UInt64(limits.cpuMillis) * 100) 100000", to: directory.appendingPathComponent("cpu.max"))
        }
      case .none:
        break
      }
    } catch {
      SandboxCgroup(directories: directories).remove()
      throw error
    }
    return SandboxCgroup(directories: directories)
  }
}

/// One sandbox's groups (one per v1 controller, or one v2 group).
struct SandboxCgroup: Sendable, Codable {
  var directories: [URL]

  /// Moves `pid` (and so every process it starts later) into the groups.
  func add(_ pid: Int32) throws {
    for directory in directories {
      try Self.write("\(pid)", to: directory.appendingPathComponent("cgroup.procs"))
    }
  }

  /// Processes still in the groups.
  var pids: [Int32] {
    var found: Set<Int32> = []
    for directory in directories {
      guard let text = try? String(contentsOf: directory.appendingPathComponent("cgroup.procs"), encoding: .utf8)
      else { continue }
      for line in text.split(separator: "\n") { if let pid = Int32(line) { found.insert(pid) } }
    }
    return found.sorted()
  }

  /// Removes the groups (each must be empty of processes).
  /// Removes the groups. A process that was just killed and reaped can keep a v1 group busy for a
  /// moment (EBUSY), so each removal is retried for up to a second before it is given up.
  func remove() {
    for directory in directories {
      var tries = 0
      while rmdir(directory.path) != 0, errno == EBUSY, tries < 200 {
        tries += 1
        usleep(5_000)
      }
    }
  }

  /// Whether the memory limit killed something (v1 `memory.oom_control`, v2 `memory.events`).
  var oomKills: Int {
    for directory in directories {
      if let text = try? String(contentsOf: directory.appendingPathComponent("memory.oom_control"), encoding: .utf8) {
        return Self.field("oom_kill", in: text) ?? 0
      }
      if let text = try? String(contentsOf: directory.appendingPathComponent("memory.events"), encoding: .utf8) {
        return Self.field("oom_kill", in: text) ?? 0
      }
    }
    return 0
  }

  private static func field(_ name: String, in text: String) -> Int? {
    for line in text.split(separator: "\n") {
      let parts = line.split(separator: " ")
      if parts.count == 2, parts[0] == name { return Int(parts[1]) }
    }
    return nil
  }

  static func write(_ value: String, to file: URL) throws {
    let fd = open(file.path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else {
      throw SandboxError.failed("cannot open \(file.path): \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    let bytes = Array(value.utf8)
    guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
      throw SandboxError.failed("cannot write '\(value)' to \(file.path): \(String(cString: strerror(errno)))")
    }
  }
}
