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

  /// A pull request the stand-in holds.
  public struct PullRequest: Sendable, Equatable {
    public var number: Int
    public var title: String
    public var head: String
    public var base: String
    public var body: String
    /// The login whose token opened it.
    public var author: String
    public var state: String = "open"
    public var merged = false
  }

  struct State {
    var requests: [Recorded] = []
    var issued: [String: Int64] = [:]
    var failNext: [(status: Int, headers: [String: String], message: String)] = []
    /// Personal tokens → login.
    var users: [String: String] = [:]
    /// Repository → its pull requests, by number.
    var pulls: [String: [PullRequest]] = [:]
  }

  /// Who a request must authenticate as.
  enum Caller {
    case app
    case person
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

  /// Accepts `token` as `login`'s personal token.
  public func addUser(login: String, token: String) {
    state.withLock { $0.users[token] = login }
  }

  /// The pull requests of `repository`, oldest first.
  public func pullRequests(_ repository: String) -> [PullRequest] {
    state.withLock { $0.pulls[repository] ?? [] }
  }

  /// Adds a pull request opened by someone outside Inspect; returns its number.
  @discardableResult
  public func addPullRequest(_ repository: String, head: String, base: String, title: String, author: String) -> Int {
    state.withLock { state in
      let number = (state.pulls.values.flatMap { $0 }.map(\.number).max() ?? 0) + 1
      state.pulls[repository, default: []].append(
        PullRequest(number: number, title: title, head: head, base: base, body: "", author: author))
      return number
    }
  }

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
    router.post("repos/:owner/:repo/pulls") { request, context in
      try await self.handle(request, context: context, as: .person) { login, body in
        let repository = "\(context.parameters.get("owner") ?? "")/\(context.parameters.get("repo") ?? "")"
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
          let title = object["title"] as? String, let head = object["head"] as? String,
          let base = object["base"] as? String, !title.isEmpty, !head.isEmpty, !base.isEmpty
        else {
          return Self.json(
            422, ["message": "Validation Failed", "errors": [["message": "title, head and base are required"]]])
        }
        let created = self.state.withLock { state -> PullRequest? in
          if state.pulls[repository, default: []].contains(where: { $0.head == head && $0.state == "open" }) {
            return nil
          }
          let number = (state.pulls.values.flatMap { $0 }.map(\.number).max() ?? 0) + 1
          let pull = PullRequest(
            number: number, title: title, head: head, base: base, body: object["body"] as? String ?? "", author: login)
          state.pulls[repository, default: []].append(pull)
          return pull
        }
        guard let created else {
          let owner = repository.split(separator: "/").first.map(String.init) ?? ""
          return Self.json(
            422,
            [
              "message": "Validation Failed",
              "errors": [
                [
                  "resource": "PullRequest", "code": "custom",
                  "message": "A pull request already exists for \(owner):\(head).",
                ]
              ],
            ])
        }
        return Self.json(201, Self.wire(created, repository))
      }
    }
    router.get("repos/:owner/:repo/pulls") { request, context in
      try await self.handle(request, context: context, as: .person) { _, _ in
        let repository = "\(context.parameters.get("owner") ?? "")/\(context.parameters.get("repo") ?? "")"
        let head = request.uri.queryParameters.get("head")
        let wanted = request.uri.queryParameters.get("state") ?? "open"
        let pulls = self.pullRequests(repository).filter { pull in
          (head == nil || head == "\(repository.split(separator: "/").first ?? ""):\(pull.head)")
            && (wanted == "all" || pull.state == wanted)
        }
        return Self.json(200, pulls.map { Self.wire($0, repository) })
      }
    }
    router.get("repos/:owner/:repo/pulls/:number") { request, context in
      try await self.handle(request, context: context, as: .person) { _, _ in
        let repository = "\(context.parameters.get("owner") ?? "")/\(context.parameters.get("repo") ?? "")"
        guard let number = Int(context.parameters.get("number") ?? ""),
          let pull = self.pullRequests(repository).first(where: { $0.number == number })
        else { return Self.json(404, ["message": "Not Found"]) }
        return Self.json(200, Self.wire(pull, repository))
      }
    }
    return router
  }

  /// A pull request as GitHub's REST API shows it (the fields Inspect reads).
  static func wire(_ pull: PullRequest, _ repository: String) -> [String: Any] {
    [
      "number": pull.number, "html_url": "https://github.com/\(repository)/pull/\(pull.number)", "state": pull.state,
      "merged": pull.merged, "draft": false, "title": pull.title, "body": pull.body,
      "user": ["login": pull.author],
      "head": ["ref": pull.head, "repo": ["full_name": repository]], "base": ["ref": pull.base],
    ]
  }

  /// Records the request, answers a queued failure if any, checks the app's JWT, then `answer`s.
  private func handle(
    _ request: Request, context: BasicRequestContext, _ answer: @Sendable () async throws -> Response
  ) async throws -> Response {
    try await handle(request, context: context, as: .app) { _, _ in try await answer() }
  }

  /// Records the request, answers a queued failure if any, checks the caller (the app's JWT, or
  /// a person's token), then `answer`s with the person's login and the request body.
  private func handle(
    _ request: Request, context: BasicRequestContext, as caller: Caller,
    _ answer: @Sendable (_ login: String, _ body: String) async throws -> Response
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
    let credential = String(authorization.dropFirst("Bearer ".count))
    switch caller {
    case .app:
      if let problem = await checkJWT(credential) { return Self.json(401, ["message": problem]) }
      return try await answer("", String(buffer: body))
    case .person:
      guard let login = state.withLock({ $0.users[credential] }) else {
        return Self.json(401, ["message": "Bad credentials"])
      }
      return try await answer(login, String(buffer: body))
    }
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

  static func json(_ status: Int, _ object: Any) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
    return Response(
      status: .init(code: status), headers: [.contentType: "application/json; charset=utf-8"],
      body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }
}
