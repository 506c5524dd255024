import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

/// `inspect catalog list|set|remove`: RepoClassifier's catalog (which repository a Slack message
/// is about), through the Gateway. Anyone signed in may list it; administrators change it.
struct CatalogCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "catalog", abstract: "List and edit the repository catalog Slack messages are classified by.",
    subcommands: [CatalogListCommand.self, CatalogSetCommand.self, CatalogRemoveCommand.self])
}

extension ClientOptions {
  /// Runs `body` with a RepoClassifier client through the Gateway.
  func withCatalog<T: Sendable>(
    _ body:
      @Sendable (
        Inspect_Classifier_V1_RepoClassifierService.Client<HTTP2ClientTransport.Posix>, Metadata
      ) async throws -> T
  ) async throws -> T {
    try await withGateway { client, metadata in try await body(.init(wrapping: client), metadata) }
  }
}

/// One line per repository: name, then its channels, aliases and hints; the description below.
struct CatalogListCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(commandName: "list", abstract: "List the catalog.")

  @OptionGroup var client: ClientOptions

  func run() async throws {
    let repos = try await client.withCatalog { catalog, metadata in
      try await catalog.listRepos(.init(), metadata: metadata).repos
    }
    for repo in repos {
      var facts: [String] = []
      if !repo.channels.isEmpty { facts.append("channels " + repo.channels.joined(separator: ", ")) }
      if !repo.aliases.isEmpty { facts.append("aliases " + repo.aliases.joined(separator: ", ")) }
      if !repo.hints.isEmpty { facts.append("hints " + repo.hints.joined(separator: ", ")) }
      if !repo.readme.isEmpty { facts.append("README \(repo.readme.utf8.count) bytes") }
      StandardOutput.writeLine(([repo.name] + facts).joined(separator: "  "))
      if !repo.description_p.isEmpty { StandardOutput.writeLine("    \(repo.description_p)") }
    }
    if repos.isEmpty { StandardError.write("inspect: the catalog is empty\n") }
  }
}

/// Adds a repository to the catalog or replaces its entry (every field given anew).
struct CatalogSetCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "set", abstract: "Add a repository to the catalog, or replace its entry (administrators).")

  @OptionGroup var client: ClientOptions

  @Argument(help: "The repository, owner/name.")
  var name: String

  @Option(help: "What the repository is, in a sentence or two.")
  var description = ""

  @Option(name: .customLong("hint"), help: "A word, path or product name that points at it (repeatable).")
  var hints: [String] = []

  @Option(name: .customLong("alias"), help: "Another name people use for it (repeatable).")
  var aliases: [String] = []

  @Option(name: .customLong("channel"), help: "A Slack channel where it is the usual repository (repeatable).")
  var channels: [String] = []

  @Option(help: "A file whose text is the repository's README (at most 64 KiB are kept).")
  var readmeFile: String?

  func run() async throws {
    var readme = ""
    if let readmeFile {
      guard let data = FileManager.default.contents(atPath: readmeFile) else {
        throw ValidationError("cannot read \(readmeFile)")
      }
      readme = String(decoding: data, as: UTF8.self)
    }
    let repo = Inspect_Classifier_V1_Repo.with {
      $0.name = name
      $0.description_p = description
      $0.hints = hints
      $0.aliases = aliases
      $0.channels = channels
      $0.readme = readme
    }
    let answer = try await client.withCatalog { catalog, metadata in
      try await catalog.upsertRepo(.with { $0.repo = repo }, metadata: metadata)
    }
    StandardOutput.writeLine("\(answer.created ? "added" : "replaced") \(answer.repo.name)")
  }
}

struct CatalogRemoveCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "remove", abstract: "Remove a repository from the catalog, and its picks (administrators).")

  @OptionGroup var client: ClientOptions

  @Argument(help: "The repository, owner/name.")
  var name: String

  func run() async throws {
    let answer = try await client.withCatalog { catalog, metadata in
      try await catalog.deleteRepo(.with { $0.name = name }, metadata: metadata)
    }
    StandardOutput.writeLine("removed \(answer.repo.name)")
  }
}
