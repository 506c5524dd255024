import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit

/// The Gateway's public gRPC API: forwards the listed methods, unary or streaming, to an
/// internal service without decoding them, after authenticating the caller's bearer token.
///
/// The caller's `authorization` is dropped and `inspect-user` is set from the verified token
/// (any `inspect-user` the client sent is discarded), so internal services can trust it.
struct ProxyService: RegistrableRPCService {
  let methods: [MethodDescriptor]
  let client: GRPCClient<HTTP2ClientTransport.Posix>
  let authenticator: Authenticator
  let downstream: Downstream

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    for method in methods {
      router.registerHandler(
        forMethod: method, deserializer: RawDeserializer(), serializer: RawSerializer()
      ) { (request: StreamingServerRequest<[UInt8]>, context) -> StreamingServerResponse<[UInt8]> in
        let authorization = request.metadata[stringValues: "authorization"].first(where: { _ in true })
        let user = try await authenticator.authenticate(authorization: authorization)
        var metadata = request.metadata
        metadata.removeAllValues(forKey: "authorization")
        metadata.replaceOrAddString(user.id, forKey: InspectCaller.metadataKey)
        let forwarded = StreamingClientRequest<[UInt8]>(metadata: metadata) { writer in
          for try await message in request.messages { try await writer.write(message) }
        }
        return StreamingServerResponse { writer in
          try await forward(forwarded, method: method, to: writer)
        }
      }
    }
  }

  /// Runs the call downstream and copies its messages, trailers and status back.
  private func forward(
    _ request: StreamingClientRequest<[UInt8]>, method: MethodDescriptor, to writer: RPCWriter<[UInt8]>
  ) async throws -> Metadata {
    do {
      var options = CallOptions.defaults
      options.waitForReady = false
      return try await client.bidirectionalStreaming(
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
        return trailers
      }
    } catch {
      throw downstream.map(error)
    }
  }
}
