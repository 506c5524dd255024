import Foundation
import InspectKit

#if canImport(Glibc)
  import Glibc
#endif

/// `sandboxes/<id>/state.json`: what a crash would leave to clean up — the sandbox's cgroups,
/// and whom it belonged to (so its work can be snapshotted). Written when the directory and
/// groups are made (a reserved launcher), again when the sandbox starts, is claimed, syncs or
/// commits.
struct LocalSandboxState: Codable, Sendable {
  var id: String
  var cgroup: SandboxCgroup
  var repository = ""
  var imageID = ""
  var imageCommit = ""
  var head = ""
  var sessionID = ""
  var branch = ""

  static func url(in directory: URL) -> URL { directory.appendingPathComponent("state.json") }

  func write(to directory: URL) throws {
    try JSONCoding.encoder.encode(self).write(to: Self.url(in: directory), options: .atomic)
  }

  static func read(from directory: URL) -> LocalSandboxState? {
    guard let data = FileManager.default.contents(atPath: url(in: directory).path) else { return nil }
    return try? JSONCoding.decoder.decode(LocalSandboxState.self, from: data)
  }
}

/// What start-up recovery found and did.
struct RecoveryReport: Sendable, CustomStringConvertible {
  var sandboxes: [String] = []
  var snapshots: [(sandbox: String, session: String, snapshot: String)] = []
  var killed = 0
  var unmounted = 0
  var incompleteSnapshots: [String] = []
  /// Sandboxes whose directory was still held by another mount namespace: moved to the trash.
  var deferred: [String] = []
  var failures: [String] = []

  var isEmpty: Bool { sandboxes.isEmpty && incompleteSnapshots.isEmpty && failures.isEmpty }

  var description: String {
    var parts = ["\(sandboxes.count) sandboxes left behind (\(killed) processes killed, \(unmounted) unmounted)"]
    for saved in snapshots { parts.append("\(saved.sandbox) of \(saved.session) saved as \(saved.snapshot)") }
    if !incompleteSnapshots.isEmpty { parts.append("incomplete snapshots removed: \(incompleteSnapshots.count)") }
    if !deferred.isEmpty {
      parts.append("moved to the trash (still held elsewhere): \(deferred.joined(separator: ", "))")
    }
    parts += failures
    return parts.joined(separator: "; ")
  }
}

extension LocalDriver {
  /// At start, before any sandbox of this data directory can be live: every sandbox directory is
  /// a leftover. Kills what still runs in its cgroups, snapshots the writable layer of a sandbox
  /// a session had claimed, unmounts, removes the groups and the directory; removes half-written
  /// snapshots. Never throws: what cannot be done is in the report.
  func recover() async -> RecoveryReport {
    var report = RecoveryReport()
    // What an earlier recovery could not remove yet.
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: paths.trash.path)) ?? [] {
      try? FileManager.default.removeItem(at: paths.trash.appendingPathComponent(entry))
    }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: paths.sandboxes.path)) ?? []
    let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
    for name in names.sorted() where name.hasPrefix("sbx-") {
      let directory = paths.sandbox(name)
      report.sandboxes.append(name)
      let state = LocalSandboxState.read(from: directory)
      let cgroup = state?.cgroup ?? SandboxCgroup(directories: [])
      // Everything still running in the sandbox's groups (bubblewrap, init, commands).
      let deadline = ContinuousClock.now + .seconds(5)
      var first = true
      while !cgroup.pids.isEmpty, ContinuousClock.now < deadline {
        for pid in cgroup.pids {
          kill(pid, SIGKILL)
          if first { report.killed += 1 }
        }
        first = false
        try? await Task.sleep(for: .milliseconds(5))
      }
      if let state, !state.sessionID.isEmpty {
        do {
          let id = Identifier.make(.snapshot)
          try FileManager.default.createDirectory(at: paths.snapshots, withIntermediateDirectories: true)
          let size = try await LayerArchive.create(
            from: directory.appendingPathComponent("upper"), to: paths.snapshotArchive(id))
          let record = SnapshotRecord(
            id: id, sessionID: state.sessionID, sandboxID: name, imageID: state.imageID,
            repository: state.repository, imageCommit: state.imageCommit, commit: state.head, branch: state.branch,
            createdAt: Date(), sizeBytes: size, durationMilliseconds: 0)
          try JSONCoding.encoder.encode(record).write(to: paths.snapshotMetadata(id), options: .atomic)
          report.snapshots.append((name, state.sessionID, id))
        } catch {
          report.failures.append("\(name): the snapshot failed: \(error)")
        }
      }
      let merged = directory.appendingPathComponent("merged").path
      if mounts.contains(" \(merged) ") {
        if umount2(merged, 0) != 0 { _ = umount2(merged, Int32(MNT_DETACH)) }
        report.unmounted += 1
      }
      cgroup.remove()
      do {
        try FileManager.default.removeItem(at: directory)
      } catch  where Self.stillMountedElsewhere(error) {
        // Another mount namespace (a sandbox started meanwhile copied the mount table) still
        // holds the overlay's mount point, so its directory cannot go yet: it moves out of the
        // way to the trash, emptied at the next start once nothing holds it.
        do {
          try FileManager.default.createDirectory(at: paths.trash, withIntermediateDirectories: true)
          try FileManager.default.moveItem(
            at: directory, to: paths.trash.appendingPathComponent("\(name)-\(UUID().uuidString)"))
          report.deferred.append(name)
        } catch {
          report.failures.append("\(name): cannot remove its directory nor move it to the trash: \(error)")
        }
      } catch {
        report.failures.append("\(name): cannot remove its directory: \(error)")
      }
    }
    // A snapshot is complete once its metadata exists; anything else is half-written.
    let snapshots = (try? FileManager.default.contentsOfDirectory(atPath: paths.snapshots.path)) ?? []
    for file in snapshots {
      let id = file.components(separatedBy: ".").first ?? file
      let incomplete =
        file.hasSuffix(".partial")
        || (file.hasSuffix(".tar.zst") && !FileManager.default.fileExists(atPath: paths.snapshotMetadata(id).path))
      if incomplete {
        try? FileManager.default.removeItem(at: paths.snapshots.appendingPathComponent(file))
        report.incompleteSnapshots.append(file)
      }
    }
    return report
  }
}

extension LocalDriver {
  /// Whether a removal failed because a directory is a mount point in another namespace (EBUSY).
  static func stillMountedElsewhere(_ error: any Error) -> Bool {
    let error = error as NSError
    if error.domain == NSPOSIXErrorDomain { return error.code == Int(EBUSY) }
    guard let underlying = error.userInfo[NSUnderlyingErrorKey] as? any Error else { return false }
    let posix = underlying as NSError
    return posix.domain == NSPOSIXErrorDomain && posix.code == Int(EBUSY)
  }
}
