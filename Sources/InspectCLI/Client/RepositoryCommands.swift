import ArgumentParser
import Foundation
import GRPCCore
import InspectKit
import InspectProtos

/// `inspect repos add owner/name` and `inspect repos list`: the repositories Inspect knows.
struct ReposCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "repos", abstract: "Register and list repositories.",
    subcommands: [ReposAddCommand.self, ReposListCommand.self])
}

/// `inspect repos add owner/name`: fetches the repository's mirror (the GitHub App must be
/// installed on it; `local/<name>` needs `remotes/<name>.git`) and registers it.
struct ReposAddCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "add", abstract: "Register a repository by owner/name (its mirror is fetched now).")

  @OptionGroup var client: ClientOptions

  @Argument(help: "The repository, owner/name.")
  var repository: String

  func run() async throws {
    let answer = try await client.withSessions { sessions, metadata in
      var options = CallOptions.defaults
      options.timeout = .seconds(300)
      return try await sessions.registerRepository(
        .with { $0.repository = repository }, metadata: metadata, options: options)
    }
    let repo = answer.repository
    StandardOutput.writeLine(
      "\(answer.created ? "registered" : "fetched again") \(repo.name) (default branch \(repo.defaultBranch), "
        + "\(repo.headCommit.prefix(12)))")
  }
}

/// `inspect repos list`: one line per repository: name, default branch, head, who registered it.
struct ReposListCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(commandName: "list", abstract: "List the registered repositories.")

  @OptionGroup var client: ClientOptions

  func run() async throws {
    let listed = try await client.withSessions { sessions, metadata in
      try await sessions.listRepositories(.init(), metadata: metadata)
    }
    for repo in listed.repositories {
      StandardOutput.writeLine(
        "\(repo.name)  \(repo.defaultBranch)  \(repo.headCommit.prefix(12))  \(repo.registeredBy.displayName)")
    }
    if listed.repositories.isEmpty { StandardError.write("inspect: no repositories registered\n") }
  }
}

/// `inspect secrets set NAME` (the value from standard input, never from the command line, where
/// other processes could read it) and `inspect secrets list`: the caller's own secrets, e.g.
/// `github`, their GitHub token, which opens their pull requests.
struct SecretsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "secrets", abstract: "Set and list your own secrets (e.g. github, your GitHub token).",
    subcommands: [SecretsSetCommand.self, SecretsListCommand.self])
}

struct SecretsSetCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "set", abstract: "Store one of your secrets; the value is read from standard input.")

  @OptionGroup var client: ClientOptions

  @Argument(help: "The secret's name, e.g. github.")
  var name: String

  func run() async throws {
    var data = Data()
    while let line = readLine(strippingNewline: false) {
      data.append(contentsOf: line.utf8)
      guard data.count <= 64 * 1024 else { throw ValidationError("the value is longer than 64 KiB") }
    }
    let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard !value.isEmpty else {
      throw ValidationError("no value on standard input (e.g. `gh auth token | inspect secrets set github`)")
    }
    let stored = try await client.withUsers { users, metadata in
      try await users.setSecret(
        .with {
          $0.scope = .user
          $0.name = name
          $0.value = value
        }, metadata: metadata)
    }
    StandardOutput.writeLine("stored \(stored.secret.name) (encrypted; it is never shown again)")
  }
}

struct SecretsListCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(commandName: "list", abstract: "List your secrets' names.")

  @OptionGroup var client: ClientOptions

  func run() async throws {
    let listed = try await client.withUsers { users, metadata in
      try await users.listSecrets(.with { $0.scope = .user }, metadata: metadata)
    }
    for secret in listed.secrets { StandardOutput.writeLine(secret.name) }
    if listed.secrets.isEmpty { StandardError.write("inspect: no secrets\n") }
  }
}
