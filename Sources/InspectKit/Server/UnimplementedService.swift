import GRPCCore

/// Answers every method of a service that is not built yet with `UNIMPLEMENTED` and a message
/// naming the method and what is missing — never a fake success. A service's real
/// implementation replaces this registration method by method as it lands.
public struct UnimplementedService: RegistrableRPCService {
  /// The methods to answer, usually the generated `….Method.descriptors`.
  public let methods: [MethodDescriptor]
  /// What is missing and where it is planned, e.g. "sessions arrive with issue #3".
  public let missing: String

  public init(methods: [MethodDescriptor], missing: String) {
    self.methods = methods
    self.missing = missing
  }

  public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    for method in methods {
      let message = "\(method.fullyQualifiedMethod) is not implemented yet: \(missing)"
      router.registerHandler(
        forMethod: method,
        deserializer: RawDeserializer(),
        serializer: RawSerializer()
      ) { (_: StreamingServerRequest<[UInt8]>, _) -> StreamingServerResponse<[UInt8]> in
        StreamingServerResponse(error: RPCError(code: .unimplemented, message: message))
      }
    }
  }
}
