import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

/// Resolves bearer tokens to users through SessionService's `UserService.AuthenticateToken`.
/// Both the HTTP API and the public gRPC port use it.
struct Authenticator: Sendable {
  let users: Inspect_Session_V1_UserService.Client<HTTP2ClientTransport.Posix>
  let downstream: Downstream

  /// The user that `authorization` (an `Authorization` header or metadata value) belongs to.
  /// Throws `UNAUTHENTICATED` when the value is missing, malformed, unknown or revoked, and
  /// `UNAVAILABLE` when SessionService cannot be reached.
  func authenticate(authorization: String?) async throws -> Inspect_Session_V1_User {
    guard let authorization, !authorization.isEmpty else {
      throw RPCError(code: .unauthenticated, message: "missing bearer token: send 'Authorization: Bearer <token>'")
    }
    let parts = authorization.split(separator: " ", maxSplits: 1)
    guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].isEmpty else {
      throw RPCError(code: .unauthenticated, message: "the authorization must read 'Bearer <token>'")
    }
    do {
      let response = try await users.authenticateToken(
        .with { $0.token = String(parts[1]) }, options: Downstream.callOptions)
      return response.user
    } catch let error as RPCError where error.code == .unauthenticated || error.code == .invalidArgument {
      throw RPCError(code: .unauthenticated, message: "invalid bearer token: \(error.message)")
    } catch {
      throw downstream.map(error)
    }
  }
}
