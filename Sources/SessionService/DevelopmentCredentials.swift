import Foundation
import InspectKit
import Logging

/// The first user of a new installation: when the index has no users, SessionService creates an
/// administrator and an API token and writes the token to `<data-dir>/dev-token` (mode 0600),
/// where `inspect up` reads it to print. Only the token's hash is kept in the database.
enum DevelopmentCredentials {
  static let fileName = "dev-token"

  static func ensure(in index: IndexDatabase, dataDirectory: URL, logger: Logger) async throws {
    guard try await index.userCount() == 0 else { return }
    let user = try await index.createUser(displayName: "Developer", email: "", githubLogin: "", isAdmin: true)
    let (token, secret) = try await index.createToken(userId: user.id, name: "development")
    let file = dataDirectory.appendingPathComponent(fileName)
    try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
    FileManager.default.createFile(
      atPath: file.path, contents: Data((secret + "\n").utf8), attributes: [.posixPermissions: 0o600])
    logger.notice(
      "created the first user and a development token",
      metadata: ["user.id": "\(user.id)", "token.id": "\(token.id)", "token.file": "\(file.path)"])
  }
}
