import AsyncHTTPClient
import Foundation
import InspectKit
import JWTKit
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// How Inspect reaches GitHub as a GitHub App.
public struct GitHubAppSettings: Sendable {
  /// The app's id or client id (the JWT's `iss`).
  public var appID: String
  /// The app's private key (PEM, PKCS#1 as GitHub hands it out, or PKCS#8).
  public var privateKeyPEM: String
  /// The REST API's base URL (`https://api.github.com`; a stand-in's in tests).
  public var apiBaseURL: String

  public init(appID: String, privateKeyPEM: String, apiBaseURL: String = "https://api.github.com") {
    self.appID = appID
    self.privateKeyPEM = privateKeyPEM
    self.apiBaseURL = apiBaseURL
  }

  /// `INSPECT_GITHUB_APP_ID`, `INSPECT_GITHUB_APP_PRIVATE_KEY_FILE` and `INSPECT_GITHUB_API_URL`;
  /// nil when no app is configured, an error naming the variable when it is configured badly.
  public static func fromEnvironment(_ environment: [String: String]) throws -> GitHubAppSettings? {
    let appID = environment["INSPECT_GITHUB_APP_ID"] ?? ""
    let keyFile = environment["INSPECT_GITHUB_APP_PRIVATE_KEY_FILE"] ?? ""
    guard !appID.isEmpty || !keyFile.isEmpty else { return nil }
    guard !appID.isEmpty else {
      throw ConfigurationError("INSPECT_GITHUB_APP_PRIVATE_KEY_FILE is set but INSPECT_GITHUB_APP_ID is not")
    }
    guard !keyFile.isEmpty else {
      throw ConfigurationError("INSPECT_GITHUB_APP_ID is set but INSPECT_GITHUB_APP_PRIVATE_KEY_FILE is not")
    }
    guard let data = FileManager.default.contents(atPath: keyFile) else {
      throw ConfigurationError("INSPECT_GITHUB_APP_PRIVATE_KEY_FILE=\(keyFile) cannot be read")
    }
    var settings = GitHubAppSettings(appID: appID, privateKeyPEM: String(decoding: data, as: UTF8.self))
    if let url = environment["INSPECT_GITHUB_API_URL"], !url.isEmpty {
      guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
        throw ConfigurationError("INSPECT_GITHUB_API_URL=\(url) is not an http(s) URL")
      }
      settings.apiBaseURL = String(url.trimmingSuffix("/"))
    }
    return settings
  }
}

/// An installation access token and when it expires.
public struct InstallationToken: Sendable, Equatable {
  public let token: String
  public let expiresAt: Date

  public init(token: String, expiresAt: Date) {
    self.token = token
    self.expiresAt = expiresAt
  }
}

/// What went wrong talking to GitHub, in words a person can act on.
public enum GitHubError: Error, Equatable, CustomStringConvertible {
  /// GitHub refused the app's JWT (wrong app id, wrong key, clock skew).
  case appRejected(String)
  /// GitHub refused a person's token (revoked or expired).
  case tokenRejected(String)
  /// The app is not installed where it was asked to act.
  case notInstalled(String)
  /// The token lacks a permission (403 without a rate limit).
  case forbidden(String)
  /// A rate limit; GitHub said when to try again.
  case rateLimited(retryAfterSeconds: Int?, String)
  /// GitHub could not be reached or failed (5xx).
  case unavailable(String)
  /// Any other answer.
  case unexpected(status: Int, String)

  public var description: String {
    switch self {
    case .appRejected(let message), .tokenRejected(let message), .notInstalled(let message), .forbidden(let message),
      .unavailable(let message):
      message
    case .rateLimited(let seconds, let message):
      message + (seconds.map { " (retry after \($0) s)" } ?? "")
    case .unexpected(let status, let message):
      "GitHub answered \(status): \(message)"
    }
  }
}

/// Authenticates as the GitHub App: signs its JWT (RS256 with the app's private key, `iat` a
/// minute in the past for clock skew, `exp` nine minutes ahead — GitHub refuses more than ten) and exchanges it for
/// installation tokens, kept until five minutes before they expire. Callers asking at the same
/// time for the same installation share one request.
public actor GitHubApp {
  /// A token is renewed once it has less than this left.
  public static let renewalMargin: TimeInterval = 5 * 60
  static let jwtLifetime: TimeInterval = 9 * 60
  static let jwtBackdate: TimeInterval = 60

  struct Claims: JWTPayload {
    var iat: IssuedAtClaim
    var exp: ExpirationClaim
    var iss: IssuerClaim

    func verify(using algorithm: some JWTAlgorithm) async throws { try exp.verifyNotExpired() }
  }

  public let settings: GitHubAppSettings
  private let keys: JWTKeyCollection
  private let http: HTTPClient
  private let now: @Sendable () -> Date
  private var tokens: [Int64: InstallationToken] = [:]
  private var fetching: [Int64: Task<InstallationToken, any Error>] = [:]
  private var installations: [String: Int64] = [:]
  /// How many installation tokens this app has requested (for tests and metrics).
  public private(set) var tokensRequested = 0

  public init(
    settings: GitHubAppSettings, http: HTTPClient = .shared, now: @escaping @Sendable () -> Date = Date.init
  ) async throws {
    let key: Insecure.RSA.PrivateKey
    do {
      key = try Insecure.RSA.PrivateKey(pem: settings.privateKeyPEM)
    } catch {
      throw ConfigurationError("the GitHub App's private key is not a usable RSA key (2048 bits or more): \(error)")
    }
    self.settings = settings
    self.http = http
    self.now = now
    keys = await JWTKeyCollection().add(rsa: key, digestAlgorithm: .sha256)
  }

  /// The app's JWT, signed now.
  public func jwt() async throws -> String {
    let now = now()
    return try await keys.sign(
      Claims(
        iat: .init(value: now.addingTimeInterval(-Self.jwtBackdate)),
        exp: .init(value: now.addingTimeInterval(Self.jwtLifetime)), iss: .init(value: settings.appID)))
  }

  /// A token for `installationID`, from the cache while it has more than the renewal margin left.
  public func installationToken(for installationID: Int64) async throws -> InstallationToken {
    if let token = tokens[installationID], token.expiresAt.timeIntervalSince(now()) > Self.renewalMargin {
      return token
    }
    if let running = fetching[installationID] { return try await running.value }
    let task = Task { try await self.requestToken(for: installationID) }
    fetching[installationID] = task
    defer { fetching[installationID] = nil }
    let token = try await task.value
    tokens[installationID] = token
    return token
  }

  /// Forgets the token used for `repository` (`owner/name`), which GitHub no longer accepts, and
  /// its installation (the app may have been reinstalled), so the next call looks both up again.
  public func invalidate(repository: String) {
    if let installation = installations.removeValue(forKey: repository) { tokens[installation] = nil }
  }

  /// The installation of the app on `repository` (`owner/name`), looked up once.
  public func installationID(for repository: String) async throws -> Int64 {
    if let known = installations[repository] { return known }
    struct Installation: Decodable { let id: Int64 }
    let body = try await send(.GET, "/repos/\(repository)/installation", expecting: 200, subject: repository)
    guard let installation = try? JSONDecoder().decode(Installation.self, from: body) else {
      throw GitHubError.unexpected(status: 200, "the installation of \(repository) has no id")
    }
    installations[repository] = installation.id
    return installation.id
  }

  /// A token for acting on `repository`.
  public func token(for repository: String) async throws -> InstallationToken {
    try await installationToken(for: try await installationID(for: repository))
  }

  private func requestToken(for installationID: Int64) async throws -> InstallationToken {
    tokensRequested += 1
    struct Answer: Decodable {
      let token: String
      let expiresAt: Date
      enum CodingKeys: String, CodingKey {
        case token
        case expiresAt = "expires_at"
      }
    }
    let body = try await send(
      .POST, "/app/installations/\(installationID)/access_tokens", expecting: 201,
      subject: "installation \(installationID)")
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    guard let answer = try? decoder.decode(Answer.self, from: body), !answer.token.isEmpty else {
      throw GitHubError.unexpected(status: 201, "the installation token answer has no token or expires_at")
    }
    return InstallationToken(token: answer.token, expiresAt: answer.expiresAt)
  }

  /// Sends a request authenticated as the app and returns the body of the expected answer.
  private func send(_ method: HTTPMethod, _ path: String, expecting: Int, subject: String) async throws -> Data {
    var request = HTTPClientRequest(url: settings.apiBaseURL + path)
    request.method = method
    request.headers.add(name: "Authorization", value: "Bearer \(try await jwt())")
    request.headers.add(name: "Accept", value: "application/vnd.github+json")
    request.headers.add(name: "X-GitHub-Api-Version", value: "2022-11-28")
    request.headers.add(name: "User-Agent", value: "inspect/\(InspectVersion.current)")
    let response: HTTPClientResponse
    let body: ByteBuffer
    do {
      response = try await http.execute(request, timeout: .seconds(20))
      body = try await response.body.collect(upTo: 1 << 20)
    } catch {
      throw GitHubError.unavailable("GitHub (\(settings.apiBaseURL)) could not be reached: \(error)")
    }
    let data = Data(buffer: body)
    let status = Int(response.status.code)
    guard status != expecting else { return data }
    throw Self.error(status: status, headers: response.headers, body: data, subject: subject, appID: settings.appID)
  }

  /// The error for a GitHub answer other than the expected one.
  static func error(status: Int, headers: HTTPHeaders, body: Data, subject: String, appID: String) -> GitHubError {
    struct Message: Decodable { let message: String }
    let message =
      (try? JSONDecoder().decode(Message.self, from: body))?.message ?? String(decoding: body, as: UTF8.self)
    if let wait = rateLimitWait(status: status, headers: headers) {
      return .rateLimited(retryAfterSeconds: wait, "GitHub's rate limit was reached acting on \(subject): \(message)")
    }
    switch status {
    case 401:
      return .appRejected(
        "GitHub refused the app's JWT (app \(appID)): \(message); check INSPECT_GITHUB_APP_ID, the private key and "
          + "this machine's clock")
    case 404:
      return .notInstalled("the GitHub App \(appID) is not installed for \(subject) (or cannot see it): \(message)")
    case 403:
      return .forbidden("the GitHub App \(appID) lacks a permission for \(subject): \(message)")
    case 500...599:
      return .unavailable("GitHub failed (\(status)) acting on \(subject): \(message)")
    default:
      return .unexpected(status: status, message)
    }
  }
}

/// Whether an answer is GitHub's rate limit (429, or 403 with `retry-after` or no requests
/// left), and then how long to wait: `retry-after`, else until `x-ratelimit-reset` (nil inside
/// when GitHub did not say).
func rateLimitWait(status: Int, headers: HTTPHeaders) -> Int?? {
  let retryAfter = headers.first(name: "retry-after").flatMap { Int($0) }
  let exhausted = headers.first(name: "x-ratelimit-remaining") == "0"
  guard status == 429 || (status == 403 && (retryAfter != nil || exhausted)) else { return nil }
  let reset = headers.first(name: "x-ratelimit-reset").flatMap { Int($0) }
  return .some(retryAfter ?? reset.map { max(0, $0 - Int(Date().timeIntervalSince1970)) })
}

extension String {
  fileprivate func trimmingSuffix(_ suffix: Character) -> Substring {
    var text = self[...]
    while text.last == suffix { text = text.dropLast() }
    return text
  }
}
