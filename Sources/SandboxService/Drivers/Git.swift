import Foundation

/// Host-side git. Repository content is never trusted: hooks are disabled and the git directory
/// of a sandbox lives outside what the sandbox can write, so nothing in the workspace can make
/// git run code on the host. Credentials are never written into any git config.
enum Git {
  static let executable = "/usr/bin/git"

  /// Options on every call: no hooks, no fsmonitor, no pager, no prompts.
  static let safety = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.pager=cat"]

  @discardableResult
  static func run(
    _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(120)
  ) async throws -> String {
    var env = ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"]
    env.merge(environment) { $1 }
    let result = try await ProcessRunner.run(executable, safety + arguments, environment: env, timeout: timeout)
    guard result.succeeded else {
      throw SandboxError.failed(
        "git \(arguments.joined(separator: " ")) failed (\(result.timedOut ? "timed out" : "exit \(result.exitCode)")): "
          + String(decoding: result.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
    return String(decoding: result.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
  }
}
