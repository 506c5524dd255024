import GRPCCore
import Hummingbird
import HummingbirdWebSocket
import InspectKit
import InspectProtos

/// The Gateway's request context: Hummingbird's core context plus the authenticated user,
/// set by ``AuthMiddleware`` on every `/v1` route, and the handler of a WebSocket upgrade.
struct GatewayRequestContext: RequestContext, WebSocketRequestContext {
  /// JSON bodies up to 4 MiB: a prompt's attachments (2 MiB at most) travel base64-encoded.
  var maxUploadSize: Int { 4 << 20 }
  var coreContext: CoreRequestContextStorage
  var user: Inspect_Session_V1_User?
  let webSocket: WebSocketHandlerReference<Self>

  init(source: ApplicationRequestContextSource) {
    coreContext = .init(source: source)
    webSocket = .init()
  }

  /// The authenticated user; routes behind ``AuthMiddleware`` always have one.
  func requireUser() throws -> Inspect_Session_V1_User {
    guard let user else { throw APIError(.unauthorized, "not authenticated") }
    return user
  }
}

/// Requires a valid bearer token on every request it guards and records its user in the context.
struct AuthMiddleware: RouterMiddleware {
  typealias Context = GatewayRequestContext
  let authenticator: Authenticator

  func handle(
    _ request: Request, context: Context,
    next: (Request, Context) async throws -> Response
  ) async throws -> Response {
    var context = context
    do {
      context.user = try await authenticator.authenticate(authorization: request.headers[.authorization])
    } catch let error as RPCError where error.code == .unauthenticated {
      throw APIError(.unauthorized, error.message, headers: [.wwwAuthenticate: "Bearer"])
    }
    return try await next(request, context)
  }
}
