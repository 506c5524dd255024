import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@Suite("Bad input gets a clear error and the service stays up")
struct BadInputTests {
  @Test("a malformed protobuf body is INVALID_ARGUMENT naming the message type")
  func malformedProtobuf() async throws {
    try await withGatewayStack { stack in
      try await withClient(stack.session.grpc) { client in
        // Field 1 as a length-delimited string claiming 100 bytes that never come.
        let garbage: [UInt8] = [0x0a, 0x64, 0x01, 0x02]
        let error = await #expect(throws: RPCError.self) {
          _ = try await client.unary(
            request: ClientRequest(message: garbage),
            descriptor: Inspect_Session_V1_UserService.Method.AuthenticateToken.descriptor,
            serializer: RawSerializer(), deserializer: RawDeserializer(), options: .defaults
          ) { try $0.message }
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("AuthenticateTokenRequest") == true)
        let status = try await Grpc_Health_V1_Health.Client(wrapping: client).check(.init()).status
        #expect(status == .serving)
      }
    }
  }

  @Test("an unknown method is UNIMPLEMENTED and the service stays up")
  func unknownMethod() async throws {
    try await withGatewayStack { stack in
      for address in [stack.session.grpc, stack.gateway.grpc] {
        try await withClient(address) { client in
          let error = await #expect(throws: RPCError.self) {
            _ = try await client.unary(
              request: ClientRequest(message: [UInt8]()),
              descriptor: MethodDescriptor(fullyQualifiedService: "inspect.nope.v1.NopeService", method: "Nope"),
              serializer: RawSerializer(), deserializer: RawDeserializer(), options: .defaults
            ) { try $0.message }
          }
          #expect(error?.code == .unimplemented)
          let status = try await Grpc_Health_V1_Health.Client(wrapping: client).check(.init()).status
          #expect(status == .serving)
        }
      }
    }
  }

  @Test("unknown HTTP routes are 404 with the JSON error body")
  func unknownRoute() async throws {
    try await withGatewayStack { stack in
      let response = try await stack.http.get("/no/such/route")
      #expect(response.status == 404)
      #expect(response.headers["content-type"]?.hasPrefix("application/json") == true)
      let body = try response.errorBody()
      #expect(body.code == "NOT_FOUND")
      #expect(body.message == "no route for GET /no/such/route")
      let admin = try await HTTPTestClient(stack.session.http).get("/nope")
      #expect(admin.status == 404)
      #expect(try admin.errorBody().code == "NOT_FOUND")
    }
  }

  @Test("malformed JSON, unknown fields and oversized bodies are rejected with what was wrong")
  func badJSON() async throws {
    try await withGatewayStack { stack in
      let malformed = try await stack.http.request(
        "POST", "/v1/sessions", headers: stack.authorized(), body: Data("{\"repository\": ".utf8))
      #expect(malformed.status == 400)
      #expect(try malformed.errorBody().code == "INVALID_ARGUMENT")
      #expect(try malformed.errorBody().message.contains("CreateSessionRequest"))

      let unknownField = try await stack.http.request(
        "POST", "/v1/sessions", headers: stack.authorized(), body: Data("{\"repositry\": \"a/b\"}".utf8))
      #expect(unknownField.status == 400)

      // JSON bodies may be 4 MiB (a prompt's attachments travel base64-encoded): 3 MiB is read
      // (and found to be no JSON), 5 MiB is refused unread.
      let large = Data(repeating: UInt8(ascii: " "), count: 3 * 1024 * 1024)
      let read = try await stack.http.request("POST", "/v1/sessions", headers: stack.authorized(), body: large)
      #expect(read.status == 400)
      let huge = Data(repeating: UInt8(ascii: " "), count: 5 * 1024 * 1024)
      let oversized = try await stack.http.request("POST", "/v1/sessions", headers: stack.authorized(), body: huge)
      #expect(oversized.status == 413)
      #expect(try oversized.errorBody().code == "RESOURCE_EXHAUSTED")

      #expect(try await stack.http.get("/healthz").status == 200)
    }
  }
}
