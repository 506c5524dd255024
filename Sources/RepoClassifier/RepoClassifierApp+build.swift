import InspectKit
import InspectProtos

extension RepoClassifierApp {
  /// Builds the service; none of its RPCs is built yet, so each answers `UNIMPLEMENTED`.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    try BuiltService.unbuilt(
      configuration, service: Inspect_Classifier_V1_RepoClassifierService.descriptor,
      methods: Inspect_Classifier_V1_RepoClassifierService.Method.descriptors,
      missing: "this version of Inspect has no repository catalog or classifier yet")
  }
}
