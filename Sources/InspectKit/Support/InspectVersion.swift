/// The version every binary reports in `/healthz` and `inspect status`.
public enum InspectVersion {
  /// The release version of this source tree.
  public static let current = "0.1.0"
}
