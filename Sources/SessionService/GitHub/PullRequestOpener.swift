import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectGitHub
import InspectKit
import InspectProtos

/// How SessionService reaches GitHub, and how it links back to Inspect.
///
/// | variable | meaning (default) |
/// |---|---|
/// | `INSPECT_GITHUB_API_URL` | GitHub's REST API (`https://api.github.com`) |
/// | `INSPECT_GITHUB_WEB_URL` | GitHub's web pages, for "open it by hand" links (`https://github.com`) |
/// | `INSPECT_PUBLIC_URL` | the Gateway's public URL, for links to sessions and screenshots (`http://127.0.0.1:8080`) |
/// | `INSPECT_GITHUB_APP_SLUG` | the app's name as people mention it in comments, `@<slug>` (`inspect`) |
/// | `INSPECT_TITLE_MODEL` | the model that writes pull request titles and bodies (empty: ModelRouter's route for the `title` task) |
struct GitHubSettings: Sendable {
  var apiBaseURL = "https://api.github.com"
  var webBaseURL = "https://github.com"
  var publicURL = "http://127.0.0.1:8080"
  var appSlug = "inspect"
  var titleModel = ""

  init() {}

  init(environment: [String: String]) throws {
    func url(_ name: String) throws -> String? {
      guard var value = environment[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
      while value.hasSuffix("/") { value.removeLast() }
      guard value.hasPrefix("http://") || value.hasPrefix("https://"), URL(string: value)?.host != nil else {
        throw ConfigurationError("\(name)=\(value) is not an http(s) URL")
      }
      return value
    }
    if let value = try url("INSPECT_GITHUB_API_URL") { apiBaseURL = value }
    if let value = try url("INSPECT_GITHUB_WEB_URL") { webBaseURL = value }
    if let value = try url("INSPECT_PUBLIC_URL") { publicURL = value }
    if let slug = environment["INSPECT_GITHUB_APP_SLUG"]?.trimmingCharacters(in: .whitespaces), !slug.isEmpty {
      guard slug.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
        throw ConfigurationError("INSPECT_GITHUB_APP_SLUG=\(slug) is not an app slug (letters, digits and dashes)")
      }
      appSlug = slug.lowercased()
    }
    titleModel = environment["INSPECT_TITLE_MODEL"] ?? ""
  }

  /// GitHub's page to open the pull request by hand.
  func compareURL(repository: String, base: String, branch: String) -> String {
    "\(webBaseURL)/\(repository)/compare/\(base)...\(branch)?expand=1"
  }

  func sessionURL(_ sessionID: String) -> String { "\(publicURL)/sessions/\(sessionID)" }

  /// A signed link to an artifact that works without a token (until it expires).
  func artifactURL(sessionID: String, artifactID: String, links: ArtifactLinks) -> String {
    "\(publicURL)/artifacts/\(sessionID)/\(artifactID)?\(links.query(session: sessionID, artifact: artifactID))"
  }
}

/// What a pull request is about: the session's branch after a turn pushed it.
struct PullRequestDraftInput: Sendable {
  var sessionID: String
  var repository: String
  var branch: String
  var baseBranch: String
  /// The prompts of the session so far, oldest first, with their authors' names.
  var prompts: [(author: String, text: String)]
  /// The agent's last answer of the turn.
  var summary: String
  /// The title and body the agent suggested when it pushed (may be empty).
  var suggestedTitle: String
  var suggestedBody: String
  /// Screenshots the session took, oldest first (name, artifact id).
  var screenshots: [(name: String, id: String)]
}

/// Writes a pull request's title and body.
protocol PullRequestDrafter: Sendable {
  func draft(_ input: PullRequestDraftInput) async throws -> (title: String, body: String)
}

/// Asks ModelRouter's fast model (the `title` task) for a title and a body.
struct ModelRouterDrafter: PullRequestDrafter {
  let client: Inspect_Model_V1_ModelRouterService.Client<HTTP2ClientTransport.Posix>
  /// Empty lets ModelRouter route the `title` task.
  let model: String

  /// A title that takes longer is written without the model.
  static let timeout: Duration = .seconds(30)

  static let instructions = """
    You write the title and description of a pull request. Answer with the title on the first \
    line (at most 72 characters, no quotes, no trailing period), a blank line, then a short \
    description in Markdown of what changed and why. Do not invent changes.
    """

  func draft(_ input: PullRequestDraftInput) async throws -> (title: String, body: String) {
    var context = "Repository: \(input.repository), branch \(input.branch) into \(input.baseBranch).\n\nRequests:\n"
    for prompt in input.prompts.suffix(20) { context += "- \(prompt.author): \(prompt.text.prefix(2000))\n" }
    if !input.summary.isEmpty { context += "\nThe agent's summary of its work:\n\(input.summary.prefix(4000))\n" }
    if !input.suggestedTitle.isEmpty { context += "\nThe agent suggested the title: \(input.suggestedTitle)\n" }
    let request = Inspect_Model_V1_GenerateRequest.instructed(
      task: .title, model: model, client: "session", system: Self.instructions, user: context,
      sessionID: input.sessionID)
    var options = CallOptions.defaults
    options.timeout = Self.timeout
    options.waitForReady = false
    let text = try await client.text(of: request, options: options)
    return try Self.split(text)
  }

  /// The first non-empty line (without a Markdown heading mark or a `Title:` label) is the
  /// title; the rest is the body.
  static func split(_ text: String) throws -> (title: String, body: String) {
    var lines = text.components(separatedBy: "\n")
    while let first = lines.first, first.trimmingCharacters(in: .whitespaces).isEmpty { lines.removeFirst() }
    guard let first = lines.first else {
      throw RPCError(code: .internalError, message: "the model wrote no title")
    }
    var title = first.trimmingCharacters(in: .whitespaces)
    while title.hasPrefix("#") { title.removeFirst() }
    title = title.trimmingCharacters(in: .whitespaces)
    if title.lowercased().hasPrefix("title:") { title.removeFirst("title:".count) }
    title = title.trimmingCharacters(in: CharacterSet.whitespaces.union(CharacterSet(charactersIn: "\"'`*")))
    let body = lines.dropFirst().joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    guard !title.isEmpty else { throw RPCError(code: .internalError, message: "the model wrote no title") }
    return (String(title.prefix(256)), body)
  }
}

/// Opens a session's pull request with the GitHub token of the person who prompted (their
/// USER-scoped `github` secret), never the app's: the person can then review it and others
/// approve it. A 422 "already exists" reuses the open pull request of the branch.
struct PullRequestOpener: Sendable {
  let settings: GitHubSettings
  let client: GitHubUserClient
  let secrets: SecretsStore
  let index: IndexDatabase
  let drafter: (any PullRequestDrafter)?
  /// Signs the screenshot links in bodies.
  let links: ArtifactLinks

  /// The `pull_request` event to record: OPEN with its number and URL, or FAILED with what went
  /// wrong and how to open it by hand (the branch stays pushed either way).
  func open(_ input: PullRequestDraftInput, people: [String]) async -> Inspect_Session_V1_PullRequest {
    var event = Inspect_Session_V1_PullRequest.with {
      $0.repository = input.repository
      $0.branch = input.branch
    }
    let byHand =
      "the branch \(input.branch) is pushed; open the pull request by hand at "
      + settings.compareURL(repository: input.repository, base: input.baseBranch, branch: input.branch)
    var names: [String] = []
    var token: String?
    for userID in people where token == nil {
      let user = try? await index.user(id: userID)
      let name = user?.displayName ?? userID
      names.append(name)
      do {
        token = try await secrets.value(.user, owner: userID, name: "github")
      } catch {
        event.state = .failed
        event.error = "\(name)'s GitHub token could not be read from the secrets store (\(error)); \(byHand)"
        return event
      }
    }
    guard let token, !token.isEmpty else {
      event.state = .failed
      event.error =
        "no GitHub token for \(names.joined(separator: ", ")): set yours with `inspect secrets set github` "
        + "(a USER secret named github); \(byHand)"
      return event
    }
    let (title, body) = await draft(input)
    do {
      let (pull, _) = try await client.openPullRequest(
        repository: input.repository, token: token, title: title, head: input.branch, base: input.baseBranch,
        body: body)
      event.number = UInt32(clamping: pull.number)
      event.url = pull.htmlURL
      event.state = pull.draft ? .draft : .open
    } catch {
      event.state = .failed
      event.error = "GitHub did not open the pull request: \(error); \(byHand)"
    }
    return event
  }

  /// The title and body: the fast model's, else the agent's suggestion, else the first prompt;
  /// the body ends with a link to the session and the session's screenshots.
  func draft(_ input: PullRequestDraftInput) async -> (title: String, body: String) {
    var title = ""
    var body = ""
    if let drafter, let drafted = try? await drafter.draft(input) {
      (title, body) = drafted
    } else if !input.suggestedTitle.isEmpty {
      (title, body) = (input.suggestedTitle, input.suggestedBody)
    } else {
      let first = input.prompts.first?.text ?? "Changes from Inspect"
      title = String(first.split(separator: "\n").first?.prefix(72) ?? "Changes from Inspect")
      body = input.summary
    }
    var footer = "---\nOpened from Inspect session [\(input.sessionID)](\(settings.sessionURL(input.sessionID)))"
    let people = Array(Set(input.prompts.map(\.author))).sorted()
    if !people.isEmpty { footer += ", asked by " + people.joined(separator: ", ") }
    footer += "."
    if !input.screenshots.isEmpty {
      footer += "\n\nScreenshots:\n"
      for shot in input.screenshots {
        footer +=
          "- [\(shot.name)](\(settings.artifactURL(sessionID: input.sessionID, artifactID: shot.id, links: links)))\n"
      }
    }
    return (title, (body.isEmpty ? "" : body + "\n\n") + footer)
  }
}
