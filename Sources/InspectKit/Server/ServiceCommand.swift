import ArgumentParser
import Logging

/// The entry point shared by the five service binaries: parse the flags, resolve them against the
/// environment, set up logging, build the service and run it until SIGTERM/SIGINT.
public protocol ServiceCommand: AsyncParsableCommand {
  /// Which of the five services this binary is.
  static var service: InspectService { get }
  /// The flags of ``ServiceOptions`` (declare with `@OptionGroup`).
  var options: ServiceOptions { get }
  /// Builds the service from its configuration; tests call this too.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService
}

extension ServiceCommand {
  public func run() async throws {
    let configuration = try options.resolve(for: Self.service)
    InspectLogging.bootstrap(level: configuration.logLevel)
    let built = try await Self.build(configuration)
    built.host.logger.info(
      "starting",
      metadata: ["version": "\(InspectVersion.current)", "data.dir": "\(configuration.dataDirectory.path)"])
    try await built.run()
  }
}
