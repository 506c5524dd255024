import ArgumentParser
import Foundation
import InspectKit
import InspectProtos

/// `inspect admin users …` and `inspect admin tokens …`: accounts, for administrators (the
/// development token is one). Tokens are shown once, when created; only their hash is stored.
struct AdminCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "admin", abstract: "Manage users and API tokens (administrators).",
    subcommands: [AdminUsersCommand.self, AdminTokensCommand.self])
}

struct AdminUsersCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "users", abstract: "List and add users.", subcommands: [List.self, Add.self],
    defaultSubcommand: List.self)

  /// `inspect admin users list`: id, name, email, GitHub login, flags.
  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List users.")

    @OptionGroup var client: ClientOptions

    func run() async throws {
      var users: [Inspect_Session_V1_User] = []
      var pageToken = ""
      repeat {
        let request = Inspect_Session_V1_ListUsersRequest.with {
          $0.pageSize = 500
          $0.pageToken = pageToken
        }
        let page = try await client.withUsers { service, metadata in
          try await service.listUsers(request, metadata: metadata)
        }
        users += page.users
        pageToken = page.nextPageToken
      } while !pageToken.isEmpty
      for user in users {
        let flags = (user.admin ? ["admin"] : []) + (user.disabled ? ["disabled"] : [])
        StandardOutput.writeLine(
          [
            user.id, user.displayName, user.email.isEmpty ? "-" : user.email,
            user.githubLogin.isEmpty ? "-" : "@" + user.githubLogin, flags.joined(separator: ","),
          ]
          .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
      }
    }
  }

  /// `inspect admin users add NAME [--email E] [--github-login L] [--admin] [--with-token]`.
  struct Add: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "add", abstract: "Add a user (and, with --with-token, an API token for them).")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The name shown for them.")
    var name: String

    @Option(help: "Their e-mail address (commit author).")
    var email: String = ""

    @Option(name: .customLong("github-login"), help: "Their GitHub login (comments on pull requests map to them).")
    var githubLogin: String = ""

    @Flag(help: "Make them an administrator.")
    var admin = false

    @Flag(name: .customLong("with-token"), help: "Also create an API token for them and print it (shown once).")
    var withToken = false

    func run() async throws {
      let user = try await client.withUsers { service, metadata in
        try await service.createUser(
          .with {
            $0.displayName = name
            $0.email = email
            $0.githubLogin = githubLogin
            $0.admin = admin
          }, metadata: metadata
        ).user
      }
      StandardOutput.writeLine("created \(user.id) (\(user.displayName))")
      guard withToken else { return }
      let created = try await client.withUsers { service, metadata in
        try await service.createToken(
          .with {
            $0.userID = user.id
            $0.name = "cli"
          }, metadata: metadata)
      }
      StandardOutput.writeLine("token \(created.token.id): \(created.secret)")
      StandardError.write("inspect: the token is shown once; store it now\n")
    }
  }
}

struct AdminTokensCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tokens", abstract: "Create, list and revoke API tokens.",
    subcommands: [Create.self, List.self, Revoke.self], defaultSubcommand: List.self)

  /// `inspect admin tokens create USER [--name N]`: prints the secret once.
  struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "create", abstract: "Create an API token for a user (its secret is printed once).")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The user id (usr-…).")
    var user: String

    @Option(help: "A name to recognise the token by.")
    var name: String = "cli"

    func run() async throws {
      let created = try await client.withUsers { service, metadata in
        try await service.createToken(
          .with {
            $0.userID = user
            $0.name = name
          }, metadata: metadata)
      }
      StandardOutput.writeLine("token \(created.token.id): \(created.secret)")
      StandardError.write("inspect: the token is shown once; store it now\n")
    }
  }

  /// `inspect admin tokens list [USER] [--all]`: id, name, prefix, state.
  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List a user's tokens.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The user id (default: yours).")
    var user: String?

    @Flag(help: "Include revoked tokens.")
    var all = false

    func run() async throws {
      let listed = try await client.withUsers { service, metadata in
        try await service.listTokens(
          .with {
            $0.userID = user ?? ""
            $0.includeRevoked = all
          }, metadata: metadata)
      }
      for token in listed.tokens {
        let state = token.hasRevokedAt ? "revoked" : "active"
        StandardOutput.writeLine("\(token.id)  \(token.name)  \(token.prefix)…  \(state)")
      }
      if listed.tokens.isEmpty { StandardError.write("inspect: no tokens\n") }
    }
  }

  /// `inspect admin tokens revoke ID`.
  struct Revoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke an API token.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The token id (tok-…).")
    var token: String

    func run() async throws {
      let revoked = try await client.withUsers { service, metadata in
        try await service.revokeToken(.with { $0.tokenID = token }, metadata: metadata)
      }
      StandardOutput.writeLine("revoked \(revoked.token.id) (\(revoked.token.name))")
    }
  }
}
