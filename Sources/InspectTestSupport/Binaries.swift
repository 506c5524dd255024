import Foundation

/// Where the built binaries are: `$INSPECT_BIN_DIR`, else next to the running test bundle
/// (SwiftPM puts `inspectPackageTests.xctest` beside the products it builds).
public enum Binaries {
  public static var directory: URL {
    if let configured = ProcessInfo.processInfo.environment["INSPECT_BIN_DIR"], !configured.isEmpty {
      return URL(fileURLWithPath: configured, isDirectory: true)
    }
    let executable =
      (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: executable).deletingLastPathComponent()
  }

  public static func path(_ name: String) -> String {
    directory.appendingPathComponent(name).path
  }
}
