import InspectKit
import InspectProtos

extension ModelRouterApp {
  /// Builds the service; none of its RPCs is built yet, so each answers `UNIMPLEMENTED`.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    try BuiltService.unbuilt(
      configuration, service: Inspect_Model_V1_ModelRouterService.descriptor,
      methods: Inspect_Model_V1_ModelRouterService.Method.descriptors,
      missing: "this version of Inspect has no model providers or routing yet")
  }
}
