import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import Gateway

@Suite("The Gateway's OpenAPI document")
struct GatewayOpenAPITests {
  @Test("/openapi.json documents exactly the routes the Gateway registers, and its schema references resolve")
  func inSyncWithTheRoutes() async throws {
    try await TemporaryDirectory.with { directory in
      let host = ServiceHost(configuration: testConfiguration(.gateway, dataDirectory: directory), servedServices: [])
      let address = HostAndPort(host: "127.0.0.1", port: 9)
      let client = try GRPCClient.peer(address)
      let downstream = Downstream(service: .session, address: address)
      let router = GatewayApp.makeRouter(
        host: host, sessionClient: client,
        authenticator: Authenticator(users: .init(wrapping: client), downstream: downstream), downstream: downstream,
        modelClient: client, modelDownstream: Downstream(service: .modelRouter, address: address), webhookSecret: nil)
      let registered = Set(router.routes.map { "\($0.method.rawValue) \($0.path)" })

      let document = try #require(
        try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
      #expect(document["openapi"] as? String == "3.1.0")
      let paths = try #require(document["paths"] as? [String: [String: Any]])
      let documented = Set(paths.flatMap { path, operations in operations.keys.map { "\($0.uppercased()) \(path)" } })
      #expect(
        registered == documented,
        "registered, not documented: \(registered.subtracting(documented).sorted()); documented, not registered: \(documented.subtracting(registered).sorted())"
      )

      let components = try #require(document["components"] as? [String: Any])
      let schemas = try #require(components["schemas"] as? [String: Any])
      let references = try NSRegularExpression(pattern: "#/components/schemas/([A-Za-z0-9._]+)")
      let text = OpenAPIDocument.json
      let named = references.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap {
        Range($0.range(at: 1), in: text).map { String(text[$0]) }
      }
      #expect(!named.isEmpty)
      #expect(Set(named).subtracting(schemas.keys).isEmpty, "unresolved: \(Set(named).subtracting(schemas.keys))")
    }
  }

  @Test("the document is served without a token; /v1 routes are not")
  func served() async throws {
    try await withGatewayStack { stack in
      let served = try await stack.http.get("/openapi.json")
      #expect(served.status == 200)
      #expect(served.text == OpenAPIDocument.json)
      #expect(served.headers["content-type"]?.hasPrefix("application/json") == true)
      #expect(try await stack.http.get("/v1/repositories").status == 401)
      // CORS is closed: no cross-origin grant, whatever the Origin.
      let crossOrigin = try await stack.http.get(
        "/v1/me", headers: stack.authorized(["Origin": "https://evil.example"]))
      #expect(crossOrigin.headers["access-control-allow-origin"] == nil)
    }
  }

  @Test(
    "the SSE frame cache encodes an event once, keeps the newest within its entry and byte bounds, skips huge frames")
  func frameCacheBounds() {
    let cache = FrameCache(capacity: 3, maxBytes: 16 * 200)
    func event(_ seq: UInt64, _ text: String) -> Inspect_Session_V1_SessionEvent {
      .with {
        $0.seq = seq
        $0.textDelta = .with { $0.text = text }
      }
    }
    let first = cache.frame(for: event(1, "one"), sessionID: "ses-a")
    #expect(first.hasPrefix("id: 1\nevent: text_delta\ndata: {"))
    // The same key answers the cached frame, even for different content.
    #expect(cache.frame(for: event(1, "changed"), sessionID: "ses-a") == first)
    #expect(cache.frame(for: event(1, "other"), sessionID: "ses-b") != first)
    for seq in UInt64(2)...5 { _ = cache.frame(for: event(seq, "x"), sessionID: "ses-a") }
    #expect(cache.held.entries == 3)
    #expect(cache.frame(for: event(1, "changed"), sessionID: "ses-a").contains("changed"))
    // A frame over a sixteenth of the byte budget is encoded but not kept.
    let before = cache.held
    let huge = cache.frame(for: event(9, String(repeating: "y", count: 400)), sessionID: "ses-a")
    #expect(huge.contains(String(repeating: "y", count: 400)))
    #expect(cache.held.entries == before.entries && cache.held.bytes == before.bytes)
    #expect(cache.held.bytes <= 16 * 200)
  }
}
