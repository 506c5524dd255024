import GRPCCore

/// The person a call acts for: the `inspect-user` metadata that the Gateway sets from the bearer
/// token it verified (and strips from what clients send). Internal services trust it; their
/// ports are never public.
public enum InspectCaller {
  /// The gRPC metadata key carrying the authenticated user id.
  public static let metadataKey = "inspect-user"

  /// The user id of the call this task serves, if the call carried one.
  @TaskLocal public static var userID: String?
}

/// Makes `inspect-user` available to handlers as ``InspectCaller/userID`` for the whole RPC,
/// response stream included, so that simple service handlers need not read metadata.
public struct CallerInterceptor: ServerInterceptor {
  public init() {}

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let user = request.metadata[stringValues: InspectCaller.metadataKey].first(where: { !$0.isEmpty })
    return try await InspectCaller.$userID.bindForRPC(user, request: request, context: context, next: next)
  }
}
