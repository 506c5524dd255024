import Foundation
import Logging
import Synchronization

/// The log line format of every Inspect binary: `text` for people (the default) or `json` for
/// log collectors (`INSPECT_LOG_FORMAT=json`).
public enum LogFormat: String, Sendable {
  case text
  case json
}

/// A swift-log handler that writes one line per message to standard error, unbuffered, with the
/// metadata of the logger, of the metadata provider (trace ids) and of the call site.
///
/// Text lines read `2026-11-30T16:00:00.123Z info inspect.session: message key=value …`.
public struct InspectLogHandler: LogHandler {
  public var logLevel: Logger.Level
  public var metadata: Logger.Metadata = [:]
  public var metadataProvider: Logger.MetadataProvider?
  private let label: String
  private let format: LogFormat

  public init(
    label: String, level: Logger.Level, format: LogFormat,
    metadataProvider: Logger.MetadataProvider?
  ) {
    self.label = label
    self.logLevel = level
    self.format = format
    self.metadataProvider = metadataProvider
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var merged = metadata
    if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
    if let explicit = event.metadata { merged.merge(explicit) { _, new in new } }
    let time = Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    let line: String
    switch format {
    case .text:
      let pairs = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.quoted("\($0.value)"))" }
      line = ([time, event.level.rawValue, "\(label):", "\(event.message)"] + pairs).joined(separator: " ")
    case .json:
      var object: [String: Any] = [
        "time": time, "level": event.level.rawValue, "label": label, "message": "\(event.message)",
      ]
      for (key, value) in merged { object[key] = "\(value)" }
      let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
      line = String(decoding: data, as: UTF8.self)
    }
    StandardError.write(line + "\n")
  }

  private static func quoted(_ value: String) -> String {
    value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" })
      ? "\"" + value.replacingOccurrences(of: "\"", with: "\\\"") + "\"" : value
  }
}

/// Unbuffered writes to standard error and standard output: block-buffered `print` would hold
/// lines back when the output is a file or a pipe.
public enum StandardError {
  public static func write(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
  }
}

/// Writes one line to standard output and flushes it at once (for lines launchers parse).
public enum StandardOutput {
  public static func writeLine(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
  }
}

/// Sets up swift-log once per process.
public enum InspectLogging {
  /// Installs ``InspectLogHandler`` with trace ids from the current task's ``TraceContext``.
  /// Safe to call more than once (tests): only the first call takes effect.
  public static func bootstrap(level: Logger.Level, environment: [String: String] = ProcessInfo.processInfo.environment)
  {
    let format = LogFormat(rawValue: environment["INSPECT_LOG_FORMAT"] ?? "text") ?? .text
    once.withLock { done in
      guard !done else { return }
      done = true
      LoggingSystem.bootstrap(
        { label, provider in
          InspectLogHandler(label: label, level: level, format: format, metadataProvider: provider)
        },
        metadataProvider: TraceMetadata.provider
      )
    }
  }

  private static let once = Mutex(false)
}
