import Crypto
import Foundation
import GRPCCore
import InspectGitHub
import InspectKit
import InspectProtos
import InspectTestSupport
import Synchronization
import Testing

@testable import Gateway
@testable import SandboxService
@testable import SessionService

/// A turn that commits and pushes (as `git_commit_and_push` reports it), with a screenshot on
/// the way, then says what it did.
private let pushes: ScriptedAgentRunner.Turn = { start, _, emit in
  emit(
    .with {
      $0.artifactAdded = .with {
        $0.artifact = .with {
          $0.id = Identifier.make(.artifact)
          $0.kind = .screenshot
          $0.name = "after.png"
          $0.mediaType = "image/png"
          $0.sessionID = start.sessionID
          $0.turnID = start.turnID
        }
      }
    })
  emit(
    .with {
      $0.branchPushed = .with {
        $0.branch = start.sessionBranch
        $0.commit = "c0ffee-\(start.turnID)"
        $0.remote = "https://github.com/\(start.repository.fullName).git"
        $0.baseBranch = start.baseBranch
        $0.pullRequestTitle = "Agent's title"
      }
    })
  emit(.with { $0.assistantMessage = .with { $0.text = "I changed the greeting." } })
  return .with { $0.outcome = .succeeded }
}

private func pullRequestEvents(_ events: [Inspect_Session_V1_SessionEvent]) -> [Inspect_Session_V1_PullRequest] {
  events.compactMap { if case .pullRequest(let pull) = $0.kind { pull } else { nil } }
}

/// The fast model's answer for every title request.
private let titleTranscript = #"{"text": "Fix the greeting\n\nThe greeting now says hello to the person by name."}"#

@Suite("Pull requests and GitHub webhooks")
struct PullRequestTests {
  @Test(
    "a push opens the pull request with the prompter's token and the fast model's title; no token fails the turn in PULL_REQUEST; follow-ups and 422 reuse it"
  )
  func openedAsThePerson() async throws {
    let key = try await AppKey()
    defer { key.directory.remove() }
    let github = try await GitHubStandIn(appID: "42", publicKeyPEM: key.publicPEM, installations: [:])
    github.addUser(login: "ada", token: "ghp_ada")
    try await github.run { apiURL in
      try await withModelRouter(defaultModel: "scripted:prtitle", transcripts: ["prtitle": titleTranscript]) {
        model, _ in
        var settings = GitHubSettings()
        settings.apiBaseURL = apiURL
        settings.publicURL = "https://inspect.example"
        let runner = ScriptedAgentRunner(pushes)
        let harness = try await SessionHarness(
          runner: runner, github: settings, drafter: ModelRouterDrafter(client: model, model: ""))
        try await harness.run { sessions, metadata in
          let id = try await sessions.createSession(
            .with {
              $0.repository = "acme/web"
              $0.prompt = "Greet people by name"
            }, metadata: metadata
          ).session.id

          // Ada has no GitHub token yet: the branch is pushed, the pull request is not opened.
          var events = try await collectEvents(sessions, metadata: metadata, session: id) {
            turnsFinished($0).count == 1
          }
          let missing = try #require(pullRequestEvents(events).last)
          #expect(missing.state == .failed)
          #expect(missing.error.contains("no GitHub token for Ada"))
          #expect(missing.error.contains("https://github.com/acme/web/compare/main...inspect/\(id)?expand=1"))
          #expect(turnsFinished(events)[0].outcome == .failed)
          #expect(turnsFinished(events)[0].failedPhase == .pullRequest)
          #expect(turnsFinished(events)[0].reason == missing.error)
          #expect(github.pullRequests("acme/web").isEmpty)

          // With her token stored, the next push opens it, as her.
          _ = try await harness.secrets.set(.user, owner: harness.user.id, name: "github", value: "ghp_ada")
          _ = try await sessions.sendPrompt(
            .with {
              $0.sessionID = id
              $0.text = "Try again"
            }, metadata: metadata)
          events = try await collectEvents(sessions, metadata: metadata, session: id) { turnsFinished($0).count == 2 }
          let opened = try #require(pullRequestEvents(events).last)
          #expect(opened.state == .open)
          #expect(opened.number == 1)
          #expect(opened.url == "https://github.com/acme/web/pull/1")
          #expect(turnsFinished(events)[1].outcome == .succeeded)
          let pulls = github.pullRequests("acme/web")
          #expect(pulls.count == 1)
          let pull = try #require(pulls.first)
          #expect(pull.author == "ada")
          #expect(pull.head == "inspect/\(id)")
          #expect(pull.base == "main")
          #expect(pull.title == "Fix the greeting")
          #expect(pull.body.hasPrefix("The greeting now says hello to the person by name."))
          #expect(pull.body.contains("(https://inspect.example/sessions/\(id))"))
          #expect(pull.body.contains("[after.png](https://inspect.example/artifacts/\(id)/art-"))
          #expect(pull.body.contains("?expires="))
          #expect(pull.body.contains("&signature="))
          let post = github.requests.filter { $0.method == "POST" && $0.path == "/repos/acme/web/pulls" }
          #expect(post.count == 1)
          #expect(post.first?.headers["authorization"] == "Bearer ghp_ada")
          let session = try await sessions.getSession(.with { $0.sessionID = id }, metadata: metadata).session
          #expect(session.pullRequest.number == 1)
          #expect(session.pullRequest.state == .open)

          // A follow-up pushes to the same branch and opens nothing new.
          _ = try await sessions.sendPrompt(
            .with {
              $0.sessionID = id
              $0.text = "Also the README"
            }, metadata: metadata)
          events = try await collectEvents(sessions, metadata: metadata, session: id) { turnsFinished($0).count == 3 }
          #expect(turnsFinished(events)[2].outcome == .succeeded)
          #expect(pullRequestEvents(events).count == 2)
          #expect(github.requests.filter { $0.method == "POST" }.count == 1)
          #expect(runner.started.withLock { $0.map(\.sessionBranch) } == Array(repeating: "inspect/\(id)", count: 3))

          // A branch that already has an open pull request (422 "already exists") reuses it.
          let other = try await sessions.createSession(.with { $0.repository = "acme/web" }, metadata: metadata)
            .session.id
          let existing = github.addPullRequest(
            "acme/web", head: "inspect/\(other)", base: "main", title: "Opened by hand", author: "ada")
          _ = try await sessions.sendPrompt(
            .with {
              $0.sessionID = other
              $0.text = "Go"
            }, metadata: metadata)
          let otherEvents = try await collectEvents(sessions, metadata: metadata, session: other) {
            turnsFinished($0).count == 1
          }
          let reused = try #require(pullRequestEvents(otherEvents).last)
          #expect(reused.state == .open)
          #expect(reused.number == UInt32(existing))
          #expect(turnsFinished(otherEvents)[0].outcome == .succeeded)
          #expect(github.pullRequests("acme/web").count == 2)
          #expect(github.requests.contains { $0.method == "GET" && $0.path == "/repos/acme/web/pulls" })
        }
      }
    }
  }

  @Test("local repositories get no pull request; a model that fails leaves the agent's suggested title")
  func draftingFallbacks() async throws {
    struct Broken: PullRequestDrafter {
      func draft(_ input: PullRequestDraftInput) async throws -> (title: String, body: String) {
        throw RPCError(code: .unavailable, message: "no model")
      }
    }
    let harness = try await SessionHarness(runner: ScriptedAgentRunner(pushes), github: GitHubSettings())
    let opener = try #require(harness.registry.pullRequests)
    let broken = PullRequestOpener(
      settings: opener.settings, client: opener.client, secrets: opener.secrets, index: opener.index, drafter: Broken(),
      links: opener.links)
    let input = PullRequestDraftInput(
      sessionID: "ses-0-x", repository: "acme/web", branch: "inspect/ses-0-x", baseBranch: "main",
      prompts: [("Ada", "Fix it")], summary: "Done.", suggestedTitle: "Suggested", suggestedBody: "Body",
      screenshots: [])
    let drafted = await broken.draft(input)
    #expect(drafted.title == "Suggested")
    #expect(drafted.body.hasPrefix("Body\n\n---\nOpened from Inspect session"))
    #expect(try ModelRouterDrafter.split("\n# Title: \"Quoted\"\n\nBody line") == ("Quoted", "Body line"))

    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"
          $0.prompt = "Change it"
        }, metadata: metadata
      ).session.id
      let events = try await collectEvents(sessions, metadata: metadata, session: id) { !turnsFinished($0).isEmpty }
      #expect(pullRequestEvents(events).isEmpty)
      #expect(turnsFinished(events)[0].outcome == .succeeded)
    }
  }

  @Test(
    "webhooks: signatures checked, replays de-duplicated, mentions queue follow-ups or start a session on the branch, merges archive"
  )
  func webhooks() async throws {
    let key = try await AppKey()
    defer { key.directory.remove() }
    let github = try await GitHubStandIn(appID: "42", publicKeyPEM: key.publicPEM, installations: [:])
    github.addUser(login: "ada", token: "ghp_ada")
    github.addUser(login: "bob", token: "ghp_bob")
    let secret = "It's a Secret to Everybody"
    try await github.run { apiURL in
      var settings = GitHubSettings()
      settings.apiBaseURL = apiURL
      settings.publicURL = "https://inspect.example"
      let dataDirectory = Mutex<URL?>(nil)
      let runner = ScriptedAgentRunner({ start, controls, emit in
        // A screenshot with content, served by the Gateway.
        let store = ArtifactStore(dataDirectory: dataDirectory.withLock { $0 }!)
        let shot = try store.store(
          Data("PNG bytes".utf8), name: "before.png", mediaType: "image/png", kind: .screenshot,
          session: start.sessionID, turn: start.turnID, toolCall: "tc-shot")
        emit(.with { $0.artifactAdded = .with { $0.artifact = shot } })
        return try await pushes(start, controls, emit)
      })
      let harness = try await SessionHarness(runner: runner, github: settings)
      dataDirectory.withLock { $0 = harness.directory.url }
      let (bob, _) = try await harness.makeUser("Bob", githubLogin: "Bob")
      _ = try await harness.secrets.set(.user, owner: harness.user.id, name: "github", value: "ghp_ada")
      _ = try await harness.secrets.set(.user, owner: bob.id, name: "github", value: "ghp_bob")
      // A pull request opened by hand, and a comment on it accepted before a restart but not yet
      // processed: the processor picks it up when it starts.
      let byHand = github.addPullRequest(
        "acme/web", head: "feature/x", base: "develop", title: "By hand", author: "bob")
      let early = Self.comment(number: byHand, login: "bob", body: "@inspect add tests for this")
      #expect(try await harness.index.storeDelivery(id: "d-early", event: "issue_comment", payload: Data(early.utf8)))

      try await harness.serve { address, sessions, metadata in
        let gateway = try await GatewayApp.build(
          testConfiguration(
            .gateway, dataDirectory: harness.directory.url, peers: PeerAddresses(addresses: [.session: address])),
          webhookSecret: SymmetricKey(data: Data(secret.utf8)))
        try await withRunningService(gateway) { addresses in
          let http = HTTPTestClient(addresses.http)
          @Sendable func deliver(
            _ event: String, _ delivery: String, _ body: String, signature: String? = nil
          ) async throws -> HTTPTestClient.Response {
            var headers = ["X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json"]
            headers["X-Hub-Signature-256"] = signature ?? Self.sign(body, secret: secret)
            return try await http.request("POST", "/github/webhooks", headers: headers, body: Data(body.utf8))
          }

          // The early delivery started a session on the hand-made pull request's branch.
          #expect(try await eventually { try await harness.index.delivery(id: "d-early")?.state == .done })
          let started = try #require(try await harness.index.session(externalKey: "github:acme/web#\(byHand)"))
          #expect(started.branch == "feature/x")
          #expect(started.baseBranch == "develop")
          #expect(started.createdBy == bob.id)
          #expect(try await eventually { runner.started.withLock { $0.contains { $0.sessionID == started.id } } })
          let startedTurn = try #require(runner.started.withLock { $0.first { $0.sessionID == started.id } })
          #expect(startedTurn.sessionBranch == "feature/x")
          #expect(startedTurn.prompts.map(\.text) == ["add tests for this"])
          #expect(startedTurn.prompts.first?.author.userID == bob.id)

          // A session of Ada's opens pull request #2 (the stand-in numbers across repositories).
          let id = try await sessions.createSession(
            .with {
              $0.repository = "acme/web"
              $0.prompt = "Greet people by name"
            }, metadata: metadata
          ).session.id
          var events = try await collectEvents(sessions, metadata: metadata, session: id) {
            turnsFinished($0).count == 1
          }
          let number = try #require(pullRequestEvents(events).last?.number)
          #expect(pullRequestEvents(events).last?.state == .open)
          // The hand-made pull request got no second one.
          #expect(github.pullRequests("acme/web").count == 2)

          // Bad input: each refused with what was wrong; nothing is stored.
          let comment = Self.comment(
            number: Int(number), login: "bob", body: "Looks good. @Inspect please also update the README")
          let forged = try await deliver(
            "issue_comment", "d-forged", comment, signature: "sha256=" + String(repeating: "0", count: 64))
          #expect(forged.status == 401)
          #expect(try forged.errorBody().message.contains("does not match"))
          let unsigned = try await http.request(
            "POST", "/github/webhooks", headers: ["X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-unsigned"],
            body: Data("{}".utf8))
          #expect(unsigned.status == 401)
          #expect(try unsigned.errorBody().message.contains("X-Hub-Signature-256"))
          let noEvent = try await http.request(
            "POST", "/github/webhooks",
            headers: ["X-GitHub-Delivery": "d-none", "X-Hub-Signature-256": Self.sign("{}", secret: secret)],
            body: Data("{}".utf8))
          #expect(noEvent.status == 400)
          let notJSON = try await deliver("issue_comment", "d-notjson", "not json")
          #expect(notJSON.status == 400)
          #expect(try notJSON.errorBody().code == "INVALID_ARGUMENT")
          for delivery in ["d-forged", "d-unsigned", "d-none", "d-notjson"] {
            #expect(try await harness.index.delivery(id: delivery) == nil)
          }

          // An event Inspect does not act on is acknowledged and recorded as ignored.
          let ping = try await deliver("ping", "d-ping", #"{"zen": "Keep it logically awesome."}"#)
          #expect(ping.status == 202)
          #expect(try ping.json()["accepted"] as? Bool == false)
          #expect(try await harness.index.delivery(id: "d-ping")?.state == .ignored)

          // Bob's comment mentioning the app becomes his follow-up in Ada's session.
          let accepted = try await deliver("issue_comment", "d-1", comment)
          #expect(accepted.status == 202)
          #expect(try accepted.json()["accepted"] as? Bool == true)
          let replay = try await deliver("issue_comment", "d-1", comment)
          #expect(replay.status == 200)
          #expect(try replay.json()["duplicate"] as? Bool == true)
          events = try await collectEvents(sessions, metadata: metadata, session: id) { turnsFinished($0).count == 2 }
          let prompts = events.compactMap { if case .promptQueued(let queued) = $0.kind { queued } else { nil } }
          #expect(prompts.map(\.text) == ["Greet people by name", "Looks good. please also update the README"])
          #expect(prompts.last?.author.userID == bob.id)
          #expect(prompts.last?.client == "github")
          #expect(try await harness.index.delivery(id: "d-1")?.state == .done)
          // Still one pull request for the session: the follow-up pushed to its branch.
          #expect(github.pullRequests("acme/web").count == 2)

          // Comments that are not for Inspect are recorded as ignored, with the reason.
          let ignored: [(String, String, String)] = [
            ("d-nomention", Self.comment(number: Int(number), login: "bob", body: "LGTM"), "does not mention"),
            (
              "d-stranger", Self.comment(number: Int(number), login: "mallory", body: "@inspect delete everything"),
              "not an Inspect user"
            ),
            (
              "d-bot", Self.comment(number: Int(number), login: "inspect[bot]", body: "@inspect hi", senderType: "Bot"),
              "by a bot"
            ),
            (
              "d-issue", Self.comment(number: Int(number), login: "bob", body: "@inspect hi", onPullRequest: false),
              "not a pull request"
            ),
            (
              "d-outsider",
              Self.comment(number: Int(number), login: "bob", body: "@inspect hi", association: "CONTRIBUTOR"),
              "not an owner, member or collaborator"
            ),
          ]
          for (delivery, body, reason) in ignored {
            #expect(try await deliver("issue_comment", delivery, body).status == 202)
            #expect(try await eventually { try await harness.index.delivery(id: delivery)?.state == .ignored })
            #expect(try await harness.index.delivery(id: delivery)?.outcome.contains(reason) == true, "\(delivery)")
          }

          // Merged: the session's pull request is MERGED, the session takes no more prompts, and
          // the stats count it.
          let merged =
            #"{"action": "closed", "number": \#(number), "pull_request": {"number": \#(number), "html_url": "https://github.com/acme/web/pull/\#(number)", "merged": true, "head": {"ref": "inspect/\#(id)"}}, "repository": {"full_name": "acme/web"}, "sender": {"login": "ada", "type": "User"}}"#
          #expect(try await deliver("pull_request", "d-merged", merged).status == 202)
          #expect(try await eventually { try await harness.index.delivery(id: "d-merged")?.state == .done })
          let session = try await sessions.getSession(.with { $0.sessionID = id }, metadata: metadata).session
          #expect(session.pullRequest.state == .merged)
          #expect(session.state == .archived)
          let refused = await rpcCode {
            _ = try await sessions.sendPrompt(
              .with {
                $0.sessionID = id
                $0.text = "one more"
              }, metadata: metadata)
          }
          #expect(refused == .failedPrecondition)
          let stats = try await sessions.getStats(.init(), metadata: metadata).stats
          #expect(stats.pullRequestsOpened >= 1)
          #expect(stats.pullRequestsMerged == 1)

          // A delivery that failed for good (GitHub refused to show the pull request) is tried
          // again when GitHub redelivers it; one that failed for the moment (GitHub answered 502)
          // is tried again on its own.
          let featureY = github.addPullRequest("acme/web", head: "feature/y", base: "main", title: "Y", author: "bob")
          github.failNext(status: 403, message: "Resource not accessible by personal access token")
          let onY = Self.comment(number: featureY, login: "bob", body: "@inspect rename it")
          #expect(try await deliver("issue_comment", "d-redelivered", onY).status == 202)
          #expect(try await eventually { try await harness.index.delivery(id: "d-redelivered")?.state == .failed })
          #expect(try await harness.index.delivery(id: "d-redelivered")?.outcome.contains("may not act") == true)
          let redelivered = try await deliver("issue_comment", "d-redelivered", onY)
          #expect(redelivered.status == 202)
          #expect(try redelivered.json()["duplicate"] as? Bool == false)
          #expect(try await eventually { try await harness.index.delivery(id: "d-redelivered")?.state == .done })
          #expect(try await harness.index.session(externalKey: "github:acme/web#\(featureY)")?.branch == "feature/y")

          let featureZ = github.addPullRequest("acme/web", head: "feature/z", base: "main", title: "Z", author: "bob")
          github.failNext(status: 502, message: "Bad gateway")
          #expect(
            try await deliver(
              "issue_comment", "d-retried", Self.comment(number: featureZ, login: "Bob", body: "@inspect go")
            ).status == 202)
          #expect(try await eventually { try await harness.index.delivery(id: "d-retried")?.state == .done })
          let retried = try #require(try await harness.index.delivery(id: "d-retried"))
          #expect(retried.attempts == 1)
          #expect(try await harness.index.session(externalKey: "github:acme/web#\(featureZ)")?.branch == "feature/z")

          // External keys of sessions started from GitHub are not for clients to claim.
          let claimed = await rpcCode {
            _ = try await sessions.createSession(
              .with {
                $0.repository = "acme/web"
                $0.externalKey = "github:acme/web#\(featureZ)"
              }, metadata: metadata)
          }
          #expect(claimed == .invalidArgument)

          // The screenshot linked from the pull request's body, through the Gateway's REST API.
          let (_, token) = try await harness.index.createToken(userId: harness.user.id, name: "test")
          let artifacts = try await sessions.listArtifacts(.with { $0.sessionID = id }, metadata: metadata).artifacts
          let shot = try #require(artifacts.first { $0.name == "before.png" })
          let content = try await http.get(
            "/v1/sessions/\(id)/artifacts/\(shot.id)/content", headers: ["Authorization": "Bearer \(token)"])
          #expect(content.status == 200)
          #expect(content.text == "PNG bytes")
          #expect(content.headers["content-type"] == "image/png")
          #expect(content.headers["content-security-policy"]?.hasPrefix("sandbox") == true)
          let unknown = try await http.get(
            "/v1/sessions/\(id)/artifacts/art-nope/content", headers: ["Authorization": "Bearer \(token)"])
          #expect(unknown.status == 404)
          #expect(try await http.get("/v1/sessions/\(id)/artifacts/\(shot.id)/content").status == 401)

          // The pull request's body links the screenshot with a signed link that works without a
          // token; a changed signature, another artifact or an expired link does not.
          let body = try #require(github.pullRequests("acme/web").first { $0.number == Int(number) }?.body)
          let linkStart = try #require(body.range(of: "(https://inspect.example/artifacts/\(id)/\(shot.id)?"))
          let link = String(body[linkStart.lowerBound...].dropFirst().prefix { $0 != ")" })
          let path = String(link.dropFirst("https://inspect.example".count))
          let signed = try await http.get(path)
          #expect(signed.status == 200)
          #expect(signed.text == "PNG bytes")
          let tampered = path.replacingOccurrences(of: "signature=", with: "signature=00")
          #expect(try await http.get(String(tampered.dropLast(2))).status == 403)
          let otherArtifact = path.replacingOccurrences(of: shot.id, with: "art-other")
          #expect(try await http.get(otherArtifact).status == 403)
          #expect(try await http.get("/artifacts/\(id)/\(shot.id)").status == 401)
          let links = try #require(harness.registry.artifactLinks)
          let expired =
            "/artifacts/\(id)/\(shot.id)?expires=1000&signature="
            + links.signature(session: id, artifact: shot.id, expires: 1000)
          #expect(try await http.get(expired).status == 403)
        }
      }
    }
  }

  @Test(
    "the webhook signature check matches GitHub's documented example; without a secret webhooks are FAILED_PRECONDITION"
  )
  func signatureAndUnconfigured() async throws {
    // From GitHub's "Validating webhook deliveries" page.
    let secret = SymmetricKey(data: Data("It's a Secret to Everybody".utf8))
    let example = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    #expect(GitHubWebhookController.verify(signature: example, payload: Data("Hello, World!".utf8), secret: secret))
    #expect(!GitHubWebhookController.verify(signature: example, payload: Data("Hello, World?".utf8), secret: secret))
    #expect(
      !GitHubWebhookController.verify(
        signature: String(example.dropLast(2)), payload: Data("Hello, World!".utf8), secret: secret))
    #expect(
      !GitHubWebhookController.verify(
        signature: "sha1=" + example.dropFirst(7), payload: Data("Hello, World!".utf8), secret: secret))
    #expect(
      !GitHubWebhookController.verify(
        signature: "sha256=zz" + example.dropFirst(9), payload: Data("Hello, World!".utf8), secret: secret))

    try await TemporaryDirectory.with { directory in
      let gateway = try await GatewayApp.build(
        testConfiguration(
          .gateway, dataDirectory: directory,
          peers: PeerAddresses(addresses: [.session: HostAndPort(host: "127.0.0.1", port: 9)])),
        webhookSecret: nil)
      try await withRunningService(gateway) { addresses in
        let answer = try await HTTPTestClient(addresses.http).request(
          "POST", "/github/webhooks", headers: ["X-GitHub-Event": "ping", "X-GitHub-Delivery": "d"],
          body: Data("{}".utf8))
        #expect(answer.status == 412)
        #expect(try answer.errorBody().code == "FAILED_PRECONDITION")
        #expect(try answer.errorBody().message.contains("INSPECT_GITHUB_WEBHOOK_SECRET"))
      }
    }
  }

  /// `sha256=<hex HMAC-SHA256(secret, body)>`, as GitHub signs deliveries.
  static func sign(_ body: String, secret: String) -> String {
    let mac = HMAC<SHA256>.authenticationCode(for: Data(body.utf8), using: SymmetricKey(data: Data(secret.utf8)))
    return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
  }

  /// An `issue_comment` created payload with the fields GitHub sends that Inspect reads.
  static func comment(
    number: Int, login: String, body: String, senderType: String = "User", onPullRequest: Bool = true,
    association: String = "MEMBER"
  ) -> String {
    var issue: [String: Any] = ["number": number, "title": "A pull request"]
    if onPullRequest { issue["pull_request"] = ["url": "https://api.github.com/repos/acme/web/pulls/\(number)"] }
    let object: [String: Any] = [
      "action": "created",
      "issue": issue,
      "comment": [
        "id": 1, "body": body, "user": ["login": login, "type": senderType], "author_association": association,
      ],
      "repository": ["full_name": "acme/web", "name": "web", "owner": ["login": "acme"]],
      "sender": ["login": login, "type": senderType],
    ]
    return String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
  }
}
