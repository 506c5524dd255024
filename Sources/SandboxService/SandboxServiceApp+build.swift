import InspectKit
import InspectProtos

extension SandboxServiceApp {
  /// Builds the service; none of its RPCs is built yet, so each answers `UNIMPLEMENTED`.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    try BuiltService.unbuilt(
      configuration, service: Inspect_Sandbox_V1_SandboxService.descriptor,
      methods: Inspect_Sandbox_V1_SandboxService.Method.descriptors,
      missing: "this version of Inspect has no images, sandboxes or agent runtime yet")
  }
}
