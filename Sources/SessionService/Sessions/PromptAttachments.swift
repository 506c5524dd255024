import Crypto
import Foundation
import GRPCCore
import InspectKit
import InspectProtos

/// What people attach to a prompt (an element picked with the Chrome extension, an image, a
/// text file): checked, stored as artifacts of the session (`artifacts/<session>/<artifact>`,
/// kind CAPTURE) before the prompt is acknowledged, named in its `prompt_queued` event without
/// their content, and read back whole when the prompt's turn starts.
enum PromptAttachments {
  /// The element capture of the Chrome extension (`clients/chrome/capture.js`): a JSON object
  /// with `version` 1.
  static let elementCapture = "application/vnd.inspect.element+json"
  static let mediaTypes: Set<String> = [
    elementCapture, "application/json", "text/plain", "text/markdown", "text/html", "text/csv", "image/png",
    "image/jpeg", "image/gif", "image/webp",
  ]
  static let maxCount = 8
  /// One attachment, at most (an element capture is capped at 64 KiB by the extension).
  static let maxBytes = 1 << 20
  /// All of one prompt's attachments: they travel whole to SandboxService in `StartTurn`.
  static let maxTotalBytes = 2 << 20
  /// All attachments one turn sends to SandboxService (whose requests may be 32 MiB): a turn
  /// taking many queued prompts sends the first ones' whole and says the rest did not fit.
  static let maxTurnBytes = 16 << 20

  /// An attachment as the prompt keeps it (the content is the artifact's).
  struct Stored: Codable, Sendable, Equatable {
    var name: String
    var mediaType: String
    var artifactId: String
    var sizeBytes: Int
  }

  /// Refuses what cannot be stored or shown: too many, too large, a name that is not a plain
  /// file name, a media type Inspect does not take, an element capture that is not one.
  static func check(_ attachments: [Inspect_Session_V1_Attachment]) throws {
    guard attachments.count <= maxCount else {
      throw RPCError(
        code: .invalidArgument, message: "\(attachments.count) attachments; at most \(maxCount) per prompt")
    }
    var total = 0
    for (index, attachment) in attachments.enumerated() {
      let label = "attachment \(index + 1)"
      let name = attachment.name
      guard !name.isEmpty, name.count <= 200, name != ".", name != "..",
        !name.contains(where: { $0 == "/" || $0 == "\\" || $0.isNewline || $0.asciiValue.map { $0 < 32 } == true })
      else {
        throw RPCError(
          code: .invalidArgument,
          message: "\(label)'s name '\(name.prefix(40))' is not a plain file name (1–200 characters, no slashes)")
      }
      let mediaType =
        attachment.mediaType.split(separator: ";").first.map {
          $0.trimmingCharacters(in: .whitespaces).lowercased()
        } ?? ""
      guard mediaTypes.contains(mediaType) else {
        throw RPCError(
          code: .invalidArgument,
          message:
            "\(label) (\(name)) is '\(attachment.mediaType)'; Inspect takes \(mediaTypes.sorted().joined(separator: ", "))"
        )
      }
      guard !attachment.data.isEmpty else {
        throw RPCError(code: .invalidArgument, message: "\(label) (\(name)) is empty")
      }
      guard attachment.data.count <= maxBytes else {
        throw RPCError(
          code: .invalidArgument, message: "\(label) (\(name)) is \(attachment.data.count) bytes; at most \(maxBytes)")
      }
      total += attachment.data.count
      if mediaType == elementCapture {
        guard let capture = try? JSONValue.decode(attachment.data), capture["version"] == .integer(1),
          capture["url"]?.stringValue != nil
        else {
          throw RPCError(
            code: .invalidArgument,
            message: "\(label) (\(name)) is not an element capture: a JSON object with \"version\": 1 and \"url\"")
        }
      }
      if !attachment.artifactID.isEmpty {
        throw RPCError(
          code: .invalidArgument, message: "\(label) (\(name)) names an artifact; send its content instead")
      }
    }
    guard total <= maxTotalBytes else {
      throw RPCError(
        code: .invalidArgument,
        message: "the attachments are \(total) bytes together; at most \(maxTotalBytes) per prompt")
    }
  }

  /// Writes each attachment's content to `<data-dir>/artifacts/<session>/<artifact-id>`; the
  /// artifacts (for `artifact_added`) and what the prompt keeps.
  static func store(
    _ attachments: [Inspect_Session_V1_Attachment], sessionID: String, dataDirectory: URL
  ) throws -> [(artifact: Inspect_Session_V1_Artifact, stored: Stored)] {
    guard !attachments.isEmpty else { return [] }
    let folder = dataDirectory.appendingPathComponent("artifacts/\(sessionID)", isDirectory: true)
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return try attachments.map { attachment in
      let id = Identifier.make(.artifact)
      let path = "artifacts/\(sessionID)/\(id)"
      try attachment.data.write(to: dataDirectory.appendingPathComponent(path), options: .atomic)
      let mediaType =
        attachment.mediaType.split(separator: ";").first.map {
          $0.trimmingCharacters(in: .whitespaces).lowercased()
        } ?? attachment.mediaType
      let artifact = Inspect_Session_V1_Artifact.with {
        $0.id = id
        $0.sessionID = sessionID
        $0.kind = .capture
        $0.name = attachment.name
        $0.mediaType = mediaType
        $0.sizeBytes = UInt64(attachment.data.count)
        $0.sha256 = SHA256.hash(data: attachment.data).map { String(format: "%02x", $0) }.joined()
        $0.createdAt = .init(date: Date())
        $0.storagePath = path
      }
      return (
        artifact, Stored(name: attachment.name, mediaType: mediaType, artifactId: id, sizeBytes: attachment.data.count)
      )
    }
  }

  /// The attachments as events show them: named, with their artifact, without content.
  static func references(_ stored: [Stored]) -> [Inspect_Session_V1_Attachment] {
    stored.map { item in
      .with {
        $0.name = item.name
        $0.mediaType = item.mediaType
        $0.artifactID = item.artifactId
      }
    }
  }

  /// The attachments with their content, read back from their artifacts, for `StartTurn`. An
  /// artifact whose file is gone becomes a short text saying so (not an empty attachment, which
  /// would read as one an earlier turn saw).
  static func load(
    _ stored: [Stored], sessionID: String, dataDirectory: URL, budget: inout Int
  ) -> [Inspect_Sandbox_V1_TurnAttachment] {
    stored.map { item in
      /// The attachment replaced by a line of text saying why.
      func note(_ text: String) -> Inspect_Sandbox_V1_TurnAttachment {
        .with {
          $0.name = item.name
          $0.mediaType = "text/plain"
          $0.data = Data(text.utf8)
        }
      }
      let described = "\(item.name) (\(item.mediaType), artifact \(item.artifactId))"
      guard item.sizeBytes <= budget else {
        return note("[\(described) is left out: this turn's attachments are over \(maxTurnBytes) bytes]")
      }
      budget -= item.sizeBytes
      let path = dataDirectory.appendingPathComponent("artifacts/\(sessionID)/\(item.artifactId)").path
      guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else {
        return note("[the content of \(described) is unavailable: its file is gone]")
      }
      return .with {
        $0.name = item.name
        $0.mediaType = item.mediaType
        $0.data = data
      }
    }
  }

  static func encode(_ stored: [Stored]) -> String {
    String(decoding: (try? JSONEncoder().encode(stored)) ?? Data("[]".utf8), as: UTF8.self)
  }

  static func decode(_ text: String) -> [Stored] {
    (try? JSONDecoder().decode([Stored].self, from: Data(text.utf8))) ?? []
  }
}
