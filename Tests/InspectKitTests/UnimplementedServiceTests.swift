import GRPCCore
import GRPCInProcessTransport
import InspectKit
import InspectProtos
import Testing

@Suite("RPCs that are not built answer UNIMPLEMENTED")
struct UnimplementedServiceTests {
  @Test("every method of an unbuilt service answers UNIMPLEMENTED naming the method and what is missing")
  func unimplementedNamesTheMethod() async throws {
    let transport = InProcessTransport()
    let service = UnimplementedService(
      methods: Inspect_Model_V1_ModelRouterService.Method.descriptors, missing: "no providers in this test")
    try await withGRPCServer(transport: transport.server, services: [service]) { _ in
      try await withGRPCClient(transport: transport.client) { client in
        let router = Inspect_Model_V1_ModelRouterService.Client(wrapping: client)
        let error = await #expect(throws: RPCError.self) { _ = try await router.listModels(.init()) }
        #expect(error?.code == .unimplemented)
        #expect(error?.message.contains("inspect.model.v1.ModelRouterService/ListModels") == true)
        #expect(error?.message.contains("no providers in this test") == true)

        let streamError = await #expect(throws: RPCError.self) {
          try await router.generate(.init()) { response in
            for try await _ in response.messages {}
          }
        }
        #expect(streamError?.code == .unimplemented)
        #expect(streamError?.message.contains("Generate") == true)
      }
    }
  }
}
