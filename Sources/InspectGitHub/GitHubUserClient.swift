import AsyncHTTPClient
import Foundation
import InspectKit
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// A pull request as GitHub describes it.
public struct GitHubPullRequest: Sendable, Equatable {
  public var number: Int
  public var htmlURL: String
  /// `open` or `closed`.
  public var state: String
  public var merged: Bool
  public var draft: Bool
  /// The branch it proposes (`head.ref`) and the repository that holds it (`head.repo.full_name`).
  public var headRef: String
  public var headRepository: String
  /// The branch it targets.
  public var baseRef: String

  public init(
    number: Int, htmlURL: String, state: String, merged: Bool = false, draft: Bool = false, headRef: String,
    headRepository: String, baseRef: String
  ) {
    self.number = number
    self.htmlURL = htmlURL
    self.state = state
    self.merged = merged
    self.draft = draft
    self.headRef = headRef
    self.headRepository = headRepository
    self.baseRef = baseRef
  }
}

/// GitHub's REST API acting as a person, with their own token: pull requests are opened by the
/// person who asked for the change, so that they can review it and others can approve it (the
/// app could not approve its own work).
public struct GitHubUserClient: Sendable {
  /// `https://api.github.com` (a stand-in's URL in tests).
  public let apiBaseURL: String
  let http: HTTPClient

  public init(apiBaseURL: String = "https://api.github.com", http: HTTPClient = .shared) {
    var base = apiBaseURL
    while base.hasSuffix("/") { base.removeLast() }
    self.apiBaseURL = base
    self.http = http
  }

  /// Opens a pull request of `head` into `base`; when GitHub answers 422 because one is open
  /// already for `head`, returns that one (`reused` true).
  public func openPullRequest(
    repository: String, token: String, title: String, head: String, base: String, body: String
  ) async throws -> (pullRequest: GitHubPullRequest, reused: Bool) {
    struct Create: Encodable {
      let title: String
      let head: String
      let base: String
      let body: String
      let draft: Bool
    }
    let payload = try JSONEncoder().encode(Create(title: title, head: head, base: base, body: body, draft: false))
    let (status, headers, data) = try await send(
      .POST, "/repos/\(repository)/pulls", token: token, body: payload, subject: repository)
    if status == 201 { return (try Self.decode(data, status: status, subject: repository), false) }
    if status == 422, String(decoding: data, as: UTF8.self).contains("already exists") {
      let owner = repository.split(separator: "/").first.map(String.init) ?? ""
      let query = "head=\(Self.escape("\(owner):\(head)"))&state=open"
      let (listed, listHeaders, list) = try await send(
        .GET, "/repos/\(repository)/pulls?\(query)", token: token, body: nil, subject: repository)
      guard listed == 200 else {
        throw Self.error(status: listed, headers: listHeaders, data: list, subject: repository)
      }
      let items = (try? JSONSerialization.jsonObject(with: list)) as? [Any] ?? []
      if let first = items.first, let object = try? JSONSerialization.data(withJSONObject: first) {
        return (try Self.decode(object, status: listed, subject: repository), true)
      }
    }
    throw Self.error(status: status, headers: headers, data: data, subject: repository)
  }

  /// One pull request.
  public func pullRequest(repository: String, number: Int, token: String) async throws -> GitHubPullRequest {
    let subject = "\(repository)#\(number)"
    let (status, headers, data) = try await send(
      .GET, "/repos/\(repository)/pulls/\(number)", token: token, body: nil, subject: subject)
    guard status == 200 else { throw Self.error(status: status, headers: headers, data: data, subject: subject) }
    return try Self.decode(data, status: status, subject: subject)
  }

  /// Sends one request and returns the status and body of any answer GitHub gave.
  private func send(
    _ method: HTTPMethod, _ path: String, token: String, body: Data?, subject: String
  ) async throws -> (Int, HTTPHeaders, Data) {
    var request = HTTPClientRequest(url: apiBaseURL + path)
    request.method = method
    request.headers.add(name: "Authorization", value: "Bearer \(token)")
    request.headers.add(name: "Accept", value: "application/vnd.github+json")
    request.headers.add(name: "X-GitHub-Api-Version", value: "2022-11-28")
    request.headers.add(name: "User-Agent", value: "inspect/\(InspectVersion.current)")
    if let body {
      request.headers.add(name: "Content-Type", value: "application/json")
      request.body = .bytes(ByteBuffer(data: body))
    }
    do {
      let response = try await http.execute(request, timeout: .seconds(20))
      let data = Data(buffer: try await response.body.collect(upTo: 4 << 20))
      return (Int(response.status.code), response.headers, data)
    } catch {
      throw GitHubError.unavailable("GitHub (\(apiBaseURL)) could not be reached acting on \(subject): \(error)")
    }
  }

  static func decode(_ data: Data, status: Int, subject: String) throws -> GitHubPullRequest {
    struct Wire: Decodable {
      struct Ref: Decodable {
        struct Repo: Decodable {
          let fullName: String
          enum CodingKeys: String, CodingKey { case fullName = "full_name" }
        }
        let ref: String
        let repo: Repo?
      }
      let number: Int
      let htmlURL: String
      let state: String
      let merged: Bool?
      let draft: Bool?
      let head: Ref
      let base: Ref
      enum CodingKeys: String, CodingKey {
        case number, state, merged, draft, head, base
        case htmlURL = "html_url"
      }
    }
    do {
      let wire = try JSONDecoder().decode(Wire.self, from: data)
      return GitHubPullRequest(
        number: wire.number, htmlURL: wire.htmlURL, state: wire.state, merged: wire.merged ?? false,
        draft: wire.draft ?? false, headRef: wire.head.ref, headRepository: wire.head.repo?.fullName ?? "",
        baseRef: wire.base.ref)
    } catch {
      throw GitHubError.unexpected(status: status, "GitHub's description of \(subject) could not be read: \(error)")
    }
  }

  /// The error for an answer other than the expected one, for a person's token.
  static func error(status: Int, headers: HTTPHeaders, data: Data, subject: String) -> GitHubError {
    struct Message: Decodable {
      struct Detail: Decodable { let message: String? }
      let message: String
      let errors: [Detail]?
    }
    let decoded = try? JSONDecoder().decode(Message.self, from: data)
    var message = decoded?.message ?? String(decoding: data.prefix(500), as: UTF8.self)
    let details = (decoded?.errors ?? []).compactMap(\.message)
    if !details.isEmpty { message += " (" + details.joined(separator: "; ") + ")" }
    if let wait = rateLimitWait(status: status, headers: headers) {
      return .rateLimited(retryAfterSeconds: wait, "GitHub's rate limit was reached acting on \(subject): \(message)")
    }
    switch status {
    case 401:
      return .tokenRejected("GitHub refused the person's token acting on \(subject): \(message)")
    case 403, 404:
      // GitHub hides repositories a token may not see behind 404.
      return .forbidden("the person's token may not act on \(subject) (GitHub answered \(status)): \(message)")
    case 500...599:
      return .unavailable("GitHub failed (\(status)) acting on \(subject): \(message)")
    default:
      return .unexpected(status: status, message)
    }
  }

  static func escape(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
  }
}
