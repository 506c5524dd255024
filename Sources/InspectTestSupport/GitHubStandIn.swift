import Foundation
import HTTPTypes
import Hummingbird
import JWTKit
import NIOCore
import Synchronization

/// A GitHub REST stand-in for tests: it verifies the app's JWT (RS256 signature with the app's
/// public key; `iss`, and `iat`/`exp` against its own clock with GitHub's rules), mints
/// installation tokens for the installations it knows, and records every request so tests can
/// assert exactly what was sent.
public final class GitHubStandIn: Sendable {
  public struct Recorded: Sendable {
    public var method: String
    public var path: String
    public var headers: [String: String]
    public var body: String
  }

  struct Claims: JWTPayload {
    var iat: IssuedAtClaim
    var exp: ExpirationClaim
    var iss: IssuerClaim
    func verify(using algorithm: some JWTAlgorithm) async throws {}
  }

  struct State {
    var requests: [Recorded] = []
    var issued: [String: Int64] = [:]
    var failNext: [(status: Int, headers: [String: String], message: String)] = []
  }

  public let appID: String
  /// Repository (`owner/name`) → installation id.
  public let installations: [String: Int64]
  /// How long minted tokens live (GitHub: one hour).
  public let tokenLifetime: TimeInterval
  private let keys: JWTKeyCollection
  private let now: @Sendable () -> Date
  private let state = Mutex(State())

  /// - Parameter publicKeyPEM: the app's public key, to verify its JWTs.
  public init(
    appID: String, publicKeyPEM: String, installations: [String: Int64], tokenLifetime: TimeInterval = 3600,
    now: @escaping @Sendable () -> Date = Date.init
  ) async throws {
    self.appID = appID
    self.installations = installations
    self.tokenLifetime = tokenLifetime
    self.now = now
    keys = await JWTKeyCollection().add(rsa: try Insecure.RSA.PublicKey(pem: publicKeyPEM), digestAlgorithm: .sha256)
  }

  public var requests: [Recorded] { state.withLock { $0.requests } }

  /// Installation tokens minted so far, with their installation.
  public var issuedTokens: [String: Int64] { state.withLock { $0.issued } }

  /// The next request answers `status` with `message` (and `headers`) instead.
  public func failNext(status: Int, headers: [String: String] = [:], message: String) {
    state.withLock { $0.failNext.append((status, headers, message)) }
  }

  /// Runs the stand-in on 127.0.0.1 for `body`, which gets its base URL.
  public func run<T: Sendable>(_ body: @Sendable (_ baseURL: String) async throws -> T) async throws -> T {
    try await withHTTPStandIn(router, body)
  }

  var router: Router<BasicRequestContext> {
    let router = Router()
    router.post("app/installations/:id/access_tokens") { request, context in
      try await self.handle(request, context: context) {
        guard let id = Int64(context.parameters.get("id") ?? ""), self.installations.values.contains(id) else {
          return Self.json(404, ["message": "Not Found"])
        }
        let token = "ghs_" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        self.state.withLock { $0.issued[token] = id }
        let expires = ISO8601DateFormatter().string(from: self.now().addingTimeInterval(self.tokenLifetime))
        return Self.json(201, ["token": token, "expires_at": expires])
      }
    }
    router.get("repos/:owner/:repo/installation") { request, context in
      try await self.handle(request, context: context) {
        let repository = "\(context.parameters.get("owner") ?? "")/\(context.parameters.get("repo") ?? "")"
        guard let id = self.installations[repository] else { return Self.json(404, ["message": "Not Found"]) }
        return Self.json(200, ["id": id])
      }
    }
    return router
  }

  /// Records the request, answers a queued failure if any, checks the app's JWT, then `answer`s.
  private func handle(
    _ request: Request, context: BasicRequestContext, _ answer: @Sendable () async throws -> Response
  ) async throws -> Response {
    let body = try await request.body.collect(upTo: 1 << 20)
    var headers: [String: String] = [:]
    for field in request.headers { headers[field.name.canonicalName] = field.value }
    let failure = state.withLock { state in
      state.requests.append(
        Recorded(
          method: request.method.rawValue, path: request.uri.path, headers: headers,
          body: String(buffer: body)))
      return state.failNext.isEmpty ? nil : state.failNext.removeFirst()
    }
    if let failure {
      var response = Self.json(failure.status, ["message": failure.message])
      for (name, value) in failure.headers {
        if let field = HTTPField.Name(name) { response.headers[field] = value }
      }
      return response
    }
    guard let authorization = headers["authorization"], authorization.hasPrefix("Bearer ") else {
      return Self.json(401, ["message": "Requires authentication"])
    }
    if let problem = await checkJWT(String(authorization.dropFirst("Bearer ".count))) {
      return Self.json(401, ["message": problem])
    }
    return try await answer()
  }

  /// Nil when the JWT is valid; else GitHub-like words for what is wrong.
  func checkJWT(_ jwt: String) async -> String? {
    let claims: Claims
    do {
      claims = try await keys.verify(jwt, as: Claims.self)
    } catch {
      return "A JSON web token could not be decoded"
    }
    let now = self.now()
    guard claims.iss.value == appID else { return "'Issuer' claim ('iss') must be an Integer or the client ID" }
    guard claims.iat.value <= now.addingTimeInterval(1) else {
      return "'Issued at' claim ('iat') must be an Integer representing a time in the past"
    }
    guard claims.exp.value > now else { return "'Expiration time' claim ('exp') is too far in the past" }
    guard claims.exp.value <= now.addingTimeInterval(600) else {
      return "'Expiration time' claim ('exp') is too far in the future"
    }
    return nil
  }

  static func json(_ status: Int, _ object: [String: Any]) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
    return Response(
      status: .init(code: status), headers: [.contentType: "application/json; charset=utf-8"],
      body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }
}
