import GRPCCore
import W3CTraceContext

/// Continues the caller's W3C trace (from `traceparent` metadata) for the whole RPC, including
/// the response stream, so that every log line the handler writes carries `trace.id`.
public struct ServerTracingInterceptor: ServerInterceptor {
  public init() {}

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    try await TraceMetadata.$current.bindForRPC(
      TraceMetadata.continuing(from: request.metadata), request: request, context: context, next: next)
  }
}

/// Sends the current trace context (or a new one) as `traceparent` on every outgoing call, so
/// that one trace id follows a request through every service it touches.
public struct ClientTracingInterceptor: ClientInterceptor {
  public init() {}

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    var request = request
    let outgoing: TraceContext
    if let current = TraceMetadata.current {
      outgoing = TraceContext(traceID: current.traceID, spanID: .random(), flags: current.flags, state: current.state)
    } else {
      outgoing = TraceMetadata.continuing(from: [:])
    }
    request.metadata.replaceOrAddString(outgoing.traceParentHeaderValue, forKey: TraceMetadata.key)
    return try await next(request, context)
  }
}
