import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

/// One HTTP/2 connection to SessionService acting for one user (`inspect-user` on every call).
struct SessionClient: Sendable {
  let grpc: GRPCClient<HTTP2ClientTransport.Posix>
  var metadata: Metadata

  var sessions: Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  var health: Grpc_Health_V1_Health.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }

  /// A plaintext client for `address`; its connections run in ``withSessionClients(count:address:_:)``.
  static func connect(to address: HostAndPort) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
    GRPCClient(
      transport: try .http2NIOPosix(
        target: .ipv4(address: address.host, port: address.port), transportSecurity: .plaintext))
  }

  /// Resolves the development token (`<data-dir>/dev-token`) to its user and acts for that user
  /// from then on.
  mutating func authenticate(token: String) async throws {
    let response = try await Inspect_Session_V1_UserService.Client(wrapping: grpc).authenticateToken(
      .with { $0.token = token })
    metadata.replaceOrAddString(response.user.id, forKey: InspectCaller.metadataKey)
  }

  /// Creates a session on `local/bench` without a prompt; returns its id and its last seq.
  func createSession() async throws -> (id: String, lastSeq: UInt64) {
    let response = try await sessions.createSession(
      .with {
        $0.repository = "local/bench"
        $0.client = "bench"
      }, metadata: metadata)
    return (response.session.id, response.session.lastSeq)
  }

  /// Queues a prompt; returns the seq of its `prompt_queued` event.
  @discardableResult
  func sendPrompt(_ sessionID: String, text: String) async throws -> UInt64 {
    try await sessions.sendPrompt(
      .with {
        $0.sessionID = sessionID
        $0.text = text
        $0.client = "bench"
      }, metadata: metadata
    ).seq
  }

  /// The session's newest seq.
  func lastSeq(of sessionID: String) async throws -> UInt64 {
    try await sessions.getSession(.with { $0.sessionID = sessionID }, metadata: metadata).session.lastSeq
  }

  /// `grpc.health.v1.Health/Check`: the cheapest unary RPC the service answers.
  func checkHealth() async throws {
    _ = try await health.check(.with { $0.service = "" })
  }
}

/// Opens `count` connections to `address` (each its own `GRPCClient`), runs `body` with them,
/// then closes them.
func withSessionClients<T: Sendable>(
  count: Int, address: HostAndPort, _ body: @Sendable ([GRPCClient<HTTP2ClientTransport.Posix>]) async throws -> T
) async throws -> T {
  let clients = try (0..<count).map { _ in try SessionClient.connect(to: address) }
  return try await withThrowingTaskGroup(of: Void.self) { group in
    for client in clients {
      group.addTask { try await client.runConnections() }
    }
    defer {
      for client in clients { client.beginGracefulShutdown() }
    }
    let result = try await body(clients)
    for client in clients { client.beginGracefulShutdown() }
    try await group.waitForAll()
    return result
  }
}
