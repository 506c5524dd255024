import GRPCCore

extension TaskLocal where Value: Sendable {
  /// Runs an intercepted RPC with this task-local bound to `value` — the handler and also its
  /// response stream, which the server produces after the handler has returned.
  func bindForRPC<Input: Sendable, Output: Sendable>(
    _ value: Value,
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    var response = try await withValue(value) { try await next(request, context) }
    if case .success(var contents) = response.accepted {
      let producer = contents.producer
      contents.producer = { writer in try await self.withValue(value) { try await producer(writer) } }
      response.accepted = .success(contents)
    }
    return response
  }
}
