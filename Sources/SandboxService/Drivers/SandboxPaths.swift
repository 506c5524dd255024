import Foundation
import InspectKit

/// Where SandboxService keeps its files under the data directory (`docs/CONTRACTS.md`).
struct SandboxPaths: Sendable {
  let root: URL

  init(_ dataDirectory: URL) { root = dataDirectory }

  /// `repos/<owner>/<name>/mirror.git`: the bare mirror images are built from.
  func mirror(_ repository: RepositoryName) -> URL {
    root.appendingPathComponent("repos/\(repository.owner)/\(repository.name)/mirror.git", isDirectory: true)
  }

  /// `images/<image-id>/` (with `workspace/` and `meta/`) and `images/<image-id>.json`.
  func image(_ id: String) -> URL { root.appendingPathComponent("images/\(id)", isDirectory: true) }
  func imageMetadata(_ id: String) -> URL { root.appendingPathComponent("images/\(id).json") }
  var images: URL { root.appendingPathComponent("images", isDirectory: true) }

  /// `sandboxes/<sandbox-id>/` with `upper/`, `work/`, `merged/` and the host-side `git/`.
  func sandbox(_ id: String) -> URL { root.appendingPathComponent("sandboxes/\(id)", isDirectory: true) }
  var sandboxes: URL { root.appendingPathComponent("sandboxes", isDirectory: true) }
  /// Sandbox directories recovery could not remove yet (emptied at the next start).
  var trash: URL { root.appendingPathComponent("sandboxes-trash", isDirectory: true) }

  /// `snapshots/<snapshot-id>.tar.zst` (the writable layer) and `snapshots/<snapshot-id>.json`.
  func snapshotArchive(_ id: String) -> URL { root.appendingPathComponent("snapshots/\(id).tar.zst") }
  func snapshotMetadata(_ id: String) -> URL { root.appendingPathComponent("snapshots/\(id).json") }
  var snapshots: URL { root.appendingPathComponent("snapshots", isDirectory: true) }

  /// Where a repository's remote is: `local/<name>` is the bare repository `remotes/<name>.git`.
  func remote(_ repository: RepositoryName) throws -> URL {
    guard repository.owner == "local" else {
      throw SandboxError.unsupported(
        "repository \(repository) is not local: only local/<name> repositories (remotes/<name>.git) can be used in this version"
      )
    }
    let url = root.appendingPathComponent("remotes/\(repository.name).git", isDirectory: true)
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw SandboxError.notFound("repository \(repository) has no remote at \(url.path)")
    }
    return url
  }
}

/// What goes wrong in sandboxes, mapped to gRPC codes in one place (`SandboxError.rpcError`).
enum SandboxError: Error, CustomStringConvertible {
  case invalid(String)
  case notFound(String)
  case permissionDenied(String)
  /// The sandbox is in no state for this (terminated, not claimed).
  case preconditionFailed(String)
  /// A limit was reached (content size, the node's sandbox count, disk).
  case exhausted(String)
  /// Not ready yet (still syncing past the bounded wait); trying again later can work.
  case unavailable(String)
  /// Clashes with work in progress (a build of the same repository).
  case aborted(String)
  case unsupported(String)
  case failed(String)

  var description: String {
    switch self {
    case .invalid(let message), .notFound(let message), .permissionDenied(let message),
      .preconditionFailed(let message), .exhausted(let message), .unavailable(let message), .aborted(let message),
      .unsupported(let message), .failed(let message):
      message
    }
  }
}
