import GRPCCore
import GRPCInProcessTransport
import InspectKit
import Testing
import W3CTraceContext

/// A method that answers with the `traceparent` of the trace its handler runs in.
struct TraceEchoService: RegistrableRPCService {
  static let method = MethodDescriptor(fullyQualifiedService: "inspect.test.v1.TraceService", method: "Echo")

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(forMethod: Self.method, deserializer: RawDeserializer(), serializer: RawSerializer()) {
      (_: StreamingServerRequest<[UInt8]>, _) -> StreamingServerResponse<[UInt8]> in
      StreamingServerResponse { writer in
        try await writer.write(Array((TraceMetadata.current?.traceParentHeaderValue ?? "none").utf8))
        return [:]
      }
    }
  }
}

@Suite("W3C trace context through gRPC metadata and into log metadata")
struct TracingTests {
  /// Calls the echo method (through the client tracing interceptor unless `metadata` is given)
  /// and returns the trace the server's handler saw.
  func serverTrace(sending metadata: Metadata? = nil) async throws -> TraceContext {
    let transport = InProcessTransport()
    let server = GRPCServer(
      transport: transport.server, services: [TraceEchoService()], interceptors: [ServerTracingInterceptor()])
    return try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await server.serve() }
      defer { server.beginGracefulShutdown() }
      let interceptors: [any ClientInterceptor] = metadata == nil ? [ClientTracingInterceptor()] : []
      return try await withGRPCClient(transport: transport.client, interceptors: interceptors) { client in
        let header = try await client.unary(
          request: ClientRequest(message: [UInt8](), metadata: metadata ?? [:]), descriptor: TraceEchoService.method,
          serializer: RawSerializer(), deserializer: RawDeserializer(), options: .defaults
        ) { try $0.message }
        return try TraceContext(traceParentHeaderValue: String(decoding: header, as: UTF8.self))
      }
    }
  }

  @Test("a call made inside a trace continues it on the server with a new span")
  func propagates() async throws {
    let caller = TraceContext(traceID: .random(), spanID: .random(), flags: .sampled, state: TraceState())
    let seen = try await TraceMetadata.$current.withValue(caller) { try await serverTrace() }
    #expect(seen.traceID == caller.traceID)
    #expect(seen.spanID != caller.spanID)
  }

  @Test("a call without a trace, or with a malformed traceparent, starts a new trace")
  func startsNewTraces() async throws {
    let first = try await serverTrace()
    let second = try await serverTrace()
    #expect(first.traceID != second.traceID)
    var malformed = Metadata()
    malformed.addString("00-not-a-trace-01", forKey: "traceparent")
    let fromMalformed = try await serverTrace(sending: malformed)
    #expect(fromMalformed.traceID != TraceID.null)
  }

  @Test("log metadata carries the current trace id")
  func logMetadata() {
    #expect(TraceMetadata.provider.get().isEmpty)
    let trace = TraceContext(traceID: .random(), spanID: .random(), flags: .sampled, state: TraceState())
    let metadata = TraceMetadata.$current.withValue(trace) { TraceMetadata.provider.get() }
    #expect(metadata["trace.id"] == "\(trace.traceID)")
    #expect(metadata["span.id"] == "\(trace.spanID)")
  }
}
