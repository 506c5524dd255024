import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import Gateway
@testable import SessionService

@Suite("The Gateway authenticates and forwards to SessionService")
struct GatewayTests {
  @Test("the development token authenticates on HTTP: GET /v1/me answers the development user")
  func meWithToken() async throws {
    try await withGatewayStack { stack in
      let response = try await stack.http.get("/v1/me", headers: stack.authorized())
      #expect(response.status == 200)
      let user = try response.json()
      #expect(user["displayName"] as? String == "Developer")
      #expect(user["admin"] as? Bool == true)
      #expect((user["id"] as? String)?.hasPrefix("usr-") == true)
    }
  }

  @Test("API calls without a token, with a malformed header or with a wrong token answer 401")
  func unauthenticatedHTTP() async throws {
    try await withGatewayStack { stack in
      for headers in [[:], ["Authorization": "Basic abc"], ["Authorization": "Bearer insp_wrong"]] {
        for path in ["/v1/me", "/v1/sessions", "/v1/sessions/ses-0-x"] {
          let response = try await stack.http.get(path, headers: headers)
          #expect(response.status == 401, "\(path) with \(headers)")
          #expect(try response.errorBody().code == "UNAUTHENTICATED")
          #expect(response.headers["www-authenticate"] == "Bearer")
        }
      }
      let missing = try await stack.http.get("/v1/me")
      #expect(try missing.errorBody().message.contains("Authorization: Bearer"))
    }
  }

  @Test("an unknown session is 404 with a message naming it")
  func unknownSessionThroughHTTP() async throws {
    try await withGatewayStack { stack in
      let response = try await stack.http.get("/v1/sessions/ses-0-abc", headers: stack.authorized())
      #expect(response.status == 404)
      let body = try response.errorBody()
      #expect(body.code == "NOT_FOUND")
      #expect(body.message.contains("ses-0-abc"))
    }
  }

  @Test("the public gRPC port requires a token and acts as the token's user")
  func grpcProxy() async throws {
    try await withGatewayStack { stack in
      try await withClient(stack.gateway.grpc) { client in
        let users = Inspect_Session_V1_UserService.Client(wrapping: client)
        let listed = try await users.listUsers(.init(), metadata: stack.tokenMetadata)
        #expect(listed.users.map(\.displayName) == ["Developer"])

        let missing = await #expect(throws: RPCError.self) { _ = try await users.listUsers(.init()) }
        #expect(missing?.code == .unauthenticated)

        // A client cannot claim to be someone through inspect-user: the Gateway ignores it.
        var spoofed = Metadata()
        spoofed.addString(listed.users[0].id, forKey: "inspect-user")
        let spoof = await #expect(throws: RPCError.self) { _ = try await users.listUsers(.init(), metadata: spoofed) }
        #expect(spoof?.code == .unauthenticated)

        let sessions = Inspect_Session_V1_SessionService.Client(wrapping: client)
        // The proxy acts for the token's user: a secret set through it is theirs, and listed back.
        let set = try await users.setSecret(
          .with {
            $0.scope = .user; $0.name = "github"; $0.value = "ghp_through_the_gateway"
          }, metadata: stack.tokenMetadata)
        #expect(set.secret.owner == listed.users[0].id)
        let secrets = try await users.listSecrets(.init(), metadata: stack.tokenMetadata)
        #expect(secrets.secrets.map(\.name) == ["github"])
        // Prewarm reaches SandboxService, which this stack does not run: UNAVAILABLE naming it.
        let down = await #expect(throws: RPCError.self) {
          _ = try await sessions.prewarm(.with { $0.repository = "local/demo" }, metadata: stack.tokenMetadata)
        }
        #expect(down?.code == .unavailable, "\(String(describing: down))")
        #expect(down?.message.contains("SandboxService") == true)
        let unknownSession = await #expect(throws: RPCError.self) {
          _ = try await sessions.getSession(.with { $0.sessionID = "ses-0-x" }, metadata: stack.tokenMetadata)
        }
        #expect(unknownSession?.code == .notFound)

        // AuthenticateToken is internal: the public port does not expose it.
        let internalOnly = await #expect(throws: RPCError.self) {
          _ = try await users.authenticateToken(.with { $0.token = stack.token }, metadata: stack.tokenMetadata)
        }
        #expect(internalOnly?.code == .unimplemented)
      }
    }
  }

  @Test("a token created through the Gateway works at once and stops working when revoked")
  func tokenLifecycle() async throws {
    try await withGatewayStack { stack in
      try await withClient(stack.gateway.grpc) { client in
        let users = Inspect_Session_V1_UserService.Client(wrapping: client)
        let created = try await users.createToken(.with { $0.name = "laptop" }, metadata: stack.tokenMetadata)
        #expect(created.secret.hasPrefix("insp_"))
        #expect(created.token.prefix == String(created.secret.prefix(9)))
        let ok = try await stack.http.get("/v1/me", headers: ["Authorization": "Bearer \(created.secret)"])
        #expect(ok.status == 200)
        _ = try await users.revokeToken(.with { $0.tokenID = created.token.id }, metadata: stack.tokenMetadata)
        let revoked = try await stack.http.get("/v1/me", headers: ["Authorization": "Bearer \(created.secret)"])
        #expect(revoked.status == 401)
      }
    }
  }

  @Test("with SessionService down the Gateway answers 503 naming it, stays up, and recovers when it returns")
  func sessionServiceDown() async throws {
    try await TemporaryDirectory.with { directory in
      let sessionPort = try FreePort.pick()
      let sessionConfiguration = {
        var configuration = testConfiguration(.session, dataDirectory: directory)
        configuration.grpcPort = sessionPort
        return configuration
      }()
      let peers = PeerAddresses(addresses: [.session: HostAndPort(host: "127.0.0.1", port: sessionPort)])
      let gateway = try await GatewayApp.build(testConfiguration(.gateway, dataDirectory: directory, peers: peers))
      try await withRunningService(gateway) { addresses in
        let http = HTTPTestClient(addresses.http)
        let down = try await http.get("/v1/me", headers: ["Authorization": "Bearer insp_anything"])
        #expect(down.status == 503)
        let body = try down.errorBody()
        #expect(body.code == "UNAVAILABLE")
        #expect(body.message.contains("SessionService is unavailable at 127.0.0.1:\(sessionPort)"))
        #expect(try await http.get("/healthz").status == 200)

        try await withClient(addresses.grpc) { client in
          var metadata = Metadata()
          metadata.addString("Bearer insp_anything", forKey: "authorization")
          let error = await #expect(throws: RPCError.self) {
            _ = try await Inspect_Session_V1_UserService.Client(wrapping: client).listUsers(.init(), metadata: metadata)
          }
          #expect(error?.code == .unavailable)
          #expect(error?.message.contains("SessionService") == true)
        }

        let session = try await SessionServiceApp.build(sessionConfiguration)
        try await withRunningService(session) { _ in
          let token = try String(contentsOf: directory.appendingPathComponent("dev-token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
          // The Gateway's connection backs off after failures; it must come back on its own.
          var status = 0
          for _ in 0..<100 where status != 200 {
            status = try await http.get("/v1/me", headers: ["Authorization": "Bearer \(token)"]).status
            if status != 200 { try await Task.sleep(for: .milliseconds(100)) }
          }
          #expect(status == 200)
        }
      }
    }
  }
}

@Suite("Live streams end cleanly")
struct LiveStreamShutdownTests {
  @Test(
    "a Subscribe held open through the Gateway ends when the services shut down, and a cancelled one is let go",
    .timeLimit(.minutes(1)))
  func subscribeDoesNotHoldShutdown() async throws {
    let held = try await withGatewayStack { stack in
      let id = try await withClient(stack.gateway.grpc) { client in
        let sessions = Inspect_Session_V1_SessionService.Client(wrapping: client)
        let id = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: stack.tokenMetadata)
          .session.id
        // A subscriber that leaves after the first event.
        let first = try await sessions.subscribe(.with { $0.sessionID = id }, metadata: stack.tokenMetadata) {
          response in
          for try await message in response.messages { return message.events.first?.seq }
          return nil
        }
        #expect(first == 1)
        return id
      }
      // A subscriber still reading when the services shut down: they must not wait for it.
      let held = Task {
        try await withClient(stack.gateway.grpc) { client in
          try await Inspect_Session_V1_SessionService.Client(wrapping: client).subscribe(
            .with { $0.sessionID = id }, metadata: stack.tokenMetadata
          ) { response in
            var count = 0
            for try await message in response.messages { count += message.events.count }
            return count
          }
        }
      }
      try await Task.sleep(for: .milliseconds(300))
      return held
    }
    // The held stream ended (cleanly or with an error) once the services were gone.
    let result = await held.result
    if case .success(let count) = result { #expect(count >= 1) }
  }
}
