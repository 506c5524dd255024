import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit

/// The Gateway's public gRPC API: forwards the listed methods to an internal service without
/// decoding them, after authenticating the caller's bearer token.
///
/// Every public method takes a single request message (unary or server-streaming), so the
/// request is read whole before the call goes downstream: the downstream call then never races
/// an early answer (an error before the request is read) against a request still being sent.
///
/// The caller's `authorization` is dropped and `inspect-user` is set from the verified token
/// (any `inspect-user` the client sent is discarded), so internal services can trust it.
struct ProxyService: RegistrableRPCService {
  let methods: [MethodDescriptor]
  let client: GRPCClient<HTTP2ClientTransport.Posix>
  let authenticator: Authenticator
  let downstream: Downstream
  /// Methods only administrators may call (checked here: the service behind does not know
  /// users).
  var adminOnly: Set<MethodDescriptor> = []

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    for method in methods {
      router.registerHandler(
        forMethod: method, deserializer: RawDeserializer(), serializer: RawSerializer()
      ) { (request: StreamingServerRequest<[UInt8]>, context) -> StreamingServerResponse<[UInt8]> in
        let authorization = request.metadata[stringValues: "authorization"].first(where: { _ in true })
        let user = try await authenticator.authenticate(authorization: authorization)
        if adminOnly.contains(method), !user.admin {
          throw RPCError(
            code: .permissionDenied,
            message: "\(method.fullyQualifiedMethod) is for administrators; \(user.displayName) is not one")
        }
        var metadata = Self.forwardable(request.metadata)
        metadata.replaceOrAddString(user.id, forKey: InspectCaller.metadataKey)
        var messages: [[UInt8]] = []
        for try await message in request.messages { messages.append(message) }
        guard messages.count == 1, let message = messages.first else {
          throw RPCError(
            code: .invalidArgument,
            message: "\(method.fullyQualifiedMethod) takes exactly one request message; got \(messages.count)")
        }
        let forwarded = ClientRequest(message: message, metadata: metadata)
        return StreamingServerResponse { writer in
          // A client that goes away cancels the call downstream too.
          try await untilRPCCancelled(cancelledValue: [:]) { try await forward(forwarded, method: method, to: writer) }
        }
      }
    }
  }

  /// Custom metadata (`traceparent` among it) without what the transport sets for each hop
  /// (`content-type`, `te`, `grpc-*`, …), the token, or a claimed `inspect-user`.
  static func forwardable(_ metadata: Metadata) -> Metadata {
    let hopByHop: Set<String> = [
      "content-type", "te", "user-agent", "accept-encoding", "host", "authorization", InspectCaller.metadataKey,
    ]
    var forwarded = Metadata()
    for (key, value) in metadata {
      let lowered = key.lowercased()
      guard !hopByHop.contains(lowered), !lowered.hasPrefix("grpc-"), !lowered.hasPrefix(":") else { continue }
      switch value {
      case .string(let text): forwarded.addString(text, forKey: key)
      case .binary(let bytes): forwarded.addBinary(bytes, forKey: key)
      }
    }
    return forwarded
  }

  /// Runs the call downstream and copies its messages, trailers and status back.
  private func forward(
    _ request: ClientRequest<[UInt8]>, method: MethodDescriptor, to writer: RPCWriter<[UInt8]>
  ) async throws -> Metadata {
    do {
      var options = CallOptions.defaults
      options.waitForReady = false
      return try await client.serverStreaming(
        request: request, descriptor: method, serializer: RawSerializer(), deserializer: RawDeserializer(),
        options: options
      ) { response in
        var trailers = Metadata()
        for try await part in try response.accepted.get().bodyParts {
          switch part {
          case .message(let message): try await writer.write(message)
          case .trailingMetadata(let metadata): trailers = metadata
          }
        }
        return Self.forwardable(trailers)
      }
    } catch {
      // The downstream status arrives with that hop's own trailers (`grpc-status`, …); sending
      // them on would duplicate ours and break the caller's stream.
      var mapped = downstream.map(error)
      mapped.metadata = Self.forwardable(mapped.metadata)
      throw mapped
    }
  }
}
