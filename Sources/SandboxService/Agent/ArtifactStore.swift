import Crypto
import Foundation
import InspectKit
import InspectProtos

/// Where the agent keeps a session's artifacts (full tool outputs, screenshots):
/// `<data-dir>/artifacts/<session-id>/<artifact-id>`, named in `Artifact.storage_path` relative to
/// the data directory (`docs/CONTRACTS.md`). The file is written whole (temporary file, then
/// rename) before the `artifact_added` event names it.
struct ArtifactStore: Sendable {
  let dataDirectory: URL

  func store(
    _ content: Data, name: String, mediaType: String, kind: Inspect_Session_V1_ArtifactKind, session: String,
    turn: String, toolCall: String
  ) throws -> Inspect_Session_V1_Artifact {
    guard !session.isEmpty, !session.contains("/"), !session.hasPrefix(".") else {
      throw ToolFailure("artifacts: '\(session)' is not a session id")
    }
    let id = Identifier.make(.artifact)
    let relative = "artifacts/\(session)/\(id)"
    let file = dataDirectory.appendingPathComponent(relative)
    try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
    let temporary = file.appendingPathExtension("partial")
    try content.write(to: temporary)
    try FileManager.default.moveItem(at: temporary, to: file)
    return .with {
      $0.id = id
      $0.sessionID = session
      $0.turnID = turn
      $0.toolCallID = toolCall
      $0.kind = kind
      $0.name = name
      $0.mediaType = mediaType
      $0.sizeBytes = UInt64(content.count)
      $0.sha256 = SHA256.hash(data: content).map { String(format: "%02x", $0) }.joined()
      $0.createdAt = .init(date: Date())
      $0.storagePath = relative
    }
  }
}
