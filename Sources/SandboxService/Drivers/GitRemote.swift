import Foundation
import InspectGitHub
import InspectKit

/// Where a repository's commits come from and go to, and how host-side git authenticates there.
struct GitRemote: Sendable {
  /// A local path (`local/<name>`) or an https URL (GitHub); never holds a credential.
  let location: String
  /// Environment for the git commands that talk to it: a credential travels as a `GIT_CONFIG_*`
  /// variable of that one command — not in any config file, not on a command line other host
  /// processes can read.
  let environment: [String: String]

  static func local(_ url: URL) -> GitRemote { GitRemote(location: url.path, environment: [:]) }
}

/// GitHub repositories (`owner/name`) over HTTPS, authenticated with the GitHub App's
/// installation token for the repository (`x-access-token` basic authentication).
struct GitHubRemotes: Sendable {
  let app: GitHubApp
  /// Where repositories are cloned from: `https://github.com` (a stand-in's URL in tests).
  let gitBaseURL: String

  /// From `INSPECT_GITHUB_APP_*` and `INSPECT_GITHUB_GIT_URL`; nil when no app is configured.
  static func fromEnvironment(_ environment: [String: String]) async throws -> GitHubRemotes? {
    guard let settings = try GitHubAppSettings.fromEnvironment(environment) else { return nil }
    var base = environment["INSPECT_GITHUB_GIT_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://github.com"
    while base.hasSuffix("/") { base.removeLast() }
    guard base.hasPrefix("https://") || base.hasPrefix("http://") else {
      throw ConfigurationError("INSPECT_GITHUB_GIT_URL=\(base) is not an http(s) URL")
    }
    return GitHubRemotes(app: try await GitHubApp(settings: settings), gitBaseURL: base)
  }

  func remote(_ repository: RepositoryName) async throws -> GitRemote {
    let token: InstallationToken
    do {
      token = try await app.token(for: repository.description)
    } catch let error as GitHubError {
      switch error {
      case .notInstalled(let message): throw SandboxError.notFound(message)
      case .rateLimited, .unavailable: throw SandboxError.unavailable("\(error)")
      default: throw SandboxError.permissionDenied("\(error)")
      }
    }
    let credential = Data("x-access-token:\(token.token)".utf8).base64EncodedString()
    return GitRemote(
      location: "\(gitBaseURL)/\(repository).git",
      environment: [
        "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": "Authorization: Basic \(credential)",
      ])
  }
}
