import Foundation
import InspectGitHub
import InspectKit
import InspectTestSupport
import Synchronization
import Testing

/// An RSA key pair made with the openssl command (PKCS#1, as GitHub hands app keys out).
struct AppKey {
  let privatePEM: String
  let publicPEM: String
  let directory: TemporaryDirectory

  init() async throws {
    directory = try TemporaryDirectory("inspect-github-key")
    let key = directory.url.appendingPathComponent("app.pem").path
    let made = try await runCommand(
      "/usr/bin/openssl", ["genrsa", "-traditional", "-out", key, "2048"], environment: [:])
    #expect(made.status == 0, "\(made.output)")
    let exported = try await runCommand(
      "/usr/bin/openssl", ["rsa", "-in", key, "-pubout", "-out", key + ".pub"], environment: [:])
    #expect(exported.status == 0, "\(exported.output)")
    privatePEM = try String(contentsOfFile: key, encoding: .utf8)
    publicPEM = try String(contentsOfFile: key + ".pub", encoding: .utf8)
  }
}

/// A clock the test moves.
final class GitHubTestClock: Sendable {
  private let current = Mutex(Date())
  var now: Date { current.withLock { $0 } }
  func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

private func base64URLDecoded(_ text: Substring) -> Data? {
  var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
  while base64.count % 4 != 0 { base64 += "=" }
  return Data(base64Encoded: base64)
}

@Suite("GitHub App authentication: the JWT, installation tokens and their cache")
struct GitHubAppTests {
  @Test("the app's JWT is RS256 over header.claims (checked with openssl), with iat a minute back and exp nine ahead")
  func jwt() async throws {
    let key = try await AppKey()
    defer { key.directory.remove() }
    let clock = GitHubTestClock()
    let app = try await GitHubApp(
      settings: .init(appID: "12345", privateKeyPEM: key.privatePEM), now: { clock.now })
    let token = try await app.jwt()
    let parts = token.split(separator: ".")
    #expect(parts.count == 3)
    let header = try #require(base64URLDecoded(parts[0]))
    let headerObject = try #require(try JSONSerialization.jsonObject(with: header) as? [String: Any])
    #expect(headerObject["alg"] as? String == "RS256")
    let claimsData = try #require(base64URLDecoded(parts[1]))
    let claims = try #require(try JSONSerialization.jsonObject(with: claimsData) as? [String: Any])
    #expect(claims["iss"] as? String == "12345")
    let now = clock.now.timeIntervalSince1970
    let iat = try #require(claims["iat"] as? Double)
    let exp = try #require(claims["exp"] as? Double)
    #expect(abs(iat - (now - 60)) < 2)
    #expect(abs(exp - (now + 540)) < 2)
    // An independent check of the signature: openssl over the signed bytes with the public key.
    let files = key.directory.url
    try Data("\(parts[0]).\(parts[1])".utf8).write(to: files.appendingPathComponent("signed"))
    try #require(base64URLDecoded(parts[2])).write(to: files.appendingPathComponent("signature"))
    try key.publicPEM.write(to: files.appendingPathComponent("public.pem"), atomically: true, encoding: .utf8)
    let verified = try await runCommand(
      "/usr/bin/openssl",
      [
        "dgst", "-sha256", "-verify", files.appendingPathComponent("public.pem").path, "-signature",
        files.appendingPathComponent("signature").path, files.appendingPathComponent("signed").path,
      ], environment: [:])
    #expect(verified.status == 0)
    #expect(verified.output.contains("Verified OK"), "\(verified.output)")
  }

  @Test(
    "installation tokens are fetched with the JWT, kept until five minutes before expiry, then renewed; callers at once share one request"
  )
  func tokensAreCached() async throws {
    let key = try await AppKey()
    defer { key.directory.remove() }
    let clock = GitHubTestClock()
    let github = try await GitHubStandIn(
      appID: "12345", publicKeyPEM: key.publicPEM, installations: ["acme/web": 77], now: { clock.now })
    try await github.run { url in
      let app = try await GitHubApp(
        settings: .init(appID: "12345", privateKeyPEM: key.privatePEM, apiBaseURL: url), now: { clock.now })
      let first = try await app.token(for: "acme/web")
      #expect(github.issuedTokens[first.token] == 77)
      #expect(abs(first.expiresAt.timeIntervalSince(clock.now) - 3600) < 2)
      // The request GitHub saw: the API version, the media type, the app's JWT.
      let minted = try #require(github.requests.first { $0.path == "/app/installations/77/access_tokens" })
      #expect(minted.method == "POST")
      #expect(minted.headers["x-github-api-version"] == "2022-11-28")
      #expect(minted.headers["accept"] == "application/vnd.github+json")
      #expect(minted.headers["authorization"]?.hasPrefix("Bearer ey") == true)

      clock.advance(50 * 60)  // 10 minutes left: still used
      #expect(try await app.token(for: "acme/web") == first)
      #expect(await app.tokensRequested == 1)
      clock.advance(6 * 60)  // 4 minutes left: renewed
      let second = try await app.token(for: "acme/web")
      #expect(second.token != first.token)
      #expect(await app.tokensRequested == 2)
      // The installation was looked up once.
      #expect(github.requests.filter { $0.path == "/repos/acme/web/installation" }.count == 1)

      clock.advance(3600)
      let concurrent = try await withThrowingTaskGroup(of: String.self) { group in
        for _ in 0..<10 { group.addTask { try await app.installationToken(for: 77).token } }
        return try await group.reduce(into: Set<String>()) { $0.insert($1) }
      }
      #expect(concurrent.count == 1)
      #expect(await app.tokensRequested == 3)
    }
  }

  @Test("a wrong key, a missing installation, a rate limit and a server error become errors that say what to do")
  func failures() async throws {
    let key = try await AppKey()
    let other = try await AppKey()
    defer {
      key.directory.remove()
      other.directory.remove()
    }
    let github = try await GitHubStandIn(
      appID: "12345", publicKeyPEM: key.publicPEM, installations: ["acme/web": 77])
    try await github.run { url in
      let impostor = try await GitHubApp(
        settings: .init(appID: "12345", privateKeyPEM: other.privatePEM, apiBaseURL: url))
      let rejected = await #expect(throws: GitHubError.self) { _ = try await impostor.token(for: "acme/web") }
      guard case .appRejected(let message)? = rejected else {
        Issue.record("expected appRejected, got \(String(describing: rejected))")
        return
      }
      #expect(message.contains("INSPECT_GITHUB_APP_ID"))

      let app = try await GitHubApp(
        settings: .init(appID: "12345", privateKeyPEM: key.privatePEM, apiBaseURL: url))
      let missing = await #expect(throws: GitHubError.self) { _ = try await app.token(for: "acme/api") }
      guard case .notInstalled(let notInstalled)? = missing else {
        Issue.record("expected notInstalled, got \(String(describing: missing))")
        return
      }
      #expect(notInstalled.contains("acme/api"))

      github.failNext(status: 429, headers: ["retry-after": "30"], message: "API rate limit exceeded")
      let limited = await #expect(throws: GitHubError.self) { _ = try await app.token(for: "acme/web") }
      #expect(
        limited
          == .rateLimited(
            retryAfterSeconds: 30, "GitHub's rate limit was reached acting on acme/web: API rate limit exceeded"))

      github.failNext(status: 502, message: "Bad Gateway")
      let broken = await #expect(throws: GitHubError.self) { _ = try await app.token(for: "acme/web") }
      guard case .unavailable? = broken else {
        Issue.record("expected unavailable, got \(String(describing: broken))")
        return
      }
      // After the failures the same app works.
      let token = try await app.token(for: "acme/web")
      #expect(github.issuedTokens[token.token] == 77)
    }
  }

  @Test("the app's settings come from the environment; a half-configured app is an error naming the variable")
  func settings() throws {
    #expect(try GitHubAppSettings.fromEnvironment([:]) == nil)
    #expect(throws: ConfigurationError.self) {
      try GitHubAppSettings.fromEnvironment(["INSPECT_GITHUB_APP_ID": "1"])
    }
    let missing = #expect(throws: ConfigurationError.self) {
      try GitHubAppSettings.fromEnvironment([
        "INSPECT_GITHUB_APP_ID": "1", "INSPECT_GITHUB_APP_PRIVATE_KEY_FILE": "/nonexistent/key.pem",
      ])
    }
    #expect(missing?.description.contains("/nonexistent/key.pem") == true)
  }

  @Test("a key that is not an RSA key is refused when the app is made")
  func badKey() async throws {
    await #expect(throws: ConfigurationError.self) {
      _ = try await GitHubApp(settings: .init(appID: "1", privateKeyPEM: "-----BEGIN RSA PRIVATE KEY-----\nnope\n"))
    }
  }
}
