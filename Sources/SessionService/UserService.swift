import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import SwiftProtobuf

/// `inspect.session.v1.UserService`: people and their API tokens. The Gateway resolves bearer
/// tokens here; every other call acts for ``InspectCaller/userID`` and is checked against it.
struct UserService: Inspect_Session_V1_UserService.SimpleServiceProtocol {
  let database: IndexDatabase
  /// Where secrets live (encrypted); nil answers the secret RPCs UNIMPLEMENTED.
  var secrets: SecretsStore?

  // MARK: - Tokens

  func authenticateToken(
    request: Inspect_Session_V1_AuthenticateTokenRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_AuthenticateTokenResponse {
    guard !request.token.isEmpty else { throw RPCError(code: .invalidArgument, message: "token is empty") }
    guard let (user, token) = try await database.authenticate(secret: request.token) else {
      throw RPCError(code: .unauthenticated, message: "the token is unknown, revoked, or its user is disabled")
    }
    return .with {
      $0.user = user.proto
      $0.tokenID = token.id
    }
  }

  func createToken(
    request: Inspect_Session_V1_CreateTokenRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_CreateTokenResponse {
    let caller = try await requireCaller()
    let userID = request.userID.isEmpty ? caller.id : request.userID
    try requireSelfOrAdmin(caller, userID)
    guard try await database.user(id: userID) != nil else { throw Self.noUser(userID) }
    let name = request.name.trimmingCharacters(in: .whitespaces)
    guard !name.isEmpty else { throw RPCError(code: .invalidArgument, message: "token name is empty") }
    let (token, secret) = try await database.createToken(userId: userID, name: name)
    return .with {
      $0.token = token.proto
      $0.secret = secret
    }
  }

  func listTokens(
    request: Inspect_Session_V1_ListTokensRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_ListTokensResponse {
    let caller = try await requireCaller()
    let userID = request.userID.isEmpty ? caller.id : request.userID
    try requireSelfOrAdmin(caller, userID)
    guard try await database.user(id: userID) != nil else { throw Self.noUser(userID) }
    let tokens = try await database.tokens(userId: userID, includeRevoked: request.includeRevoked)
    return .with { $0.tokens = tokens.map(\.proto) }
  }

  func revokeToken(
    request: Inspect_Session_V1_RevokeTokenRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_RevokeTokenResponse {
    let caller = try await requireCaller()
    guard let token = try await database.token(id: request.tokenID) else {
      throw RPCError(code: .notFound, message: "no token with id '\(request.tokenID)'")
    }
    try requireSelfOrAdmin(caller, token.userId)
    guard let revoked = try await database.revokeToken(id: token.id) else {
      throw RPCError(code: .notFound, message: "no token with id '\(request.tokenID)'")
    }
    return .with { $0.token = revoked.proto }
  }

  // MARK: - Users

  func createUser(
    request: Inspect_Session_V1_CreateUserRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_CreateUserResponse {
    let caller = try await requireCaller()
    guard caller.isAdmin else {
      throw RPCError(code: .permissionDenied, message: "only an administrator may create users")
    }
    let name = request.displayName.trimmingCharacters(in: .whitespaces)
    guard !name.isEmpty else { throw RPCError(code: .invalidArgument, message: "display_name is empty") }
    if !request.email.isEmpty, !Self.looksLikeEmail(request.email) {
      throw RPCError(code: .invalidArgument, message: "email '\(request.email)' is not an email address")
    }
    if try await database.userExists(email: request.email, githubLogin: request.githubLogin) {
      let what = [
        request.email.isEmpty ? nil : "the email '\(request.email)'",
        request.githubLogin.isEmpty ? nil : "the GitHub login '\(request.githubLogin)' (logins ignore case)",
      ].compactMap { $0 }.joined(separator: " or ")
      throw RPCError(code: .alreadyExists, message: "a user with \(what) already exists")
    }
    let user = try await database.createUser(
      displayName: name, email: request.email, githubLogin: request.githubLogin, isAdmin: request.admin)
    return .with { $0.user = user.proto }
  }

  func getUser(
    request: Inspect_Session_V1_GetUserRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_GetUserResponse {
    let caller = try await requireCaller()
    let userID = request.userID.isEmpty ? caller.id : request.userID
    try requireSelfOrAdmin(caller, userID)
    guard let user = try await database.user(id: userID) else { throw Self.noUser(userID) }
    return .with { $0.user = user.proto }
  }

  func listUsers(
    request: Inspect_Session_V1_ListUsersRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_ListUsersResponse {
    let caller = try await requireCaller()
    guard caller.isAdmin else {
      throw RPCError(code: .permissionDenied, message: "only an administrator may list users")
    }
    if !request.pageToken.isEmpty, !Identifier.isValid(request.pageToken, kind: .user) {
      throw RPCError(
        code: .invalidArgument, message: "page_token '\(request.pageToken)' is not one this service issued")
    }
    let size = request.pageSize == 0 ? 100 : Int(min(request.pageSize, 1000))
    let users = try await database.users(after: request.pageToken.isEmpty ? nil : request.pageToken, limit: size + 1)
    return .with {
      $0.users = users.prefix(size).map(\.proto)
      if users.count > size, let last = users.prefix(size).last { $0.nextPageToken = last.id }
    }
  }

  // MARK: - Secrets

  func setSecret(
    request: Inspect_Session_V1_SetSecretRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_SetSecretResponse {
    let caller = try await requireCaller()
    let store = try requireSecrets("SetSecret")
    let name = request.name.trimmingCharacters(in: .whitespaces)
    guard !name.isEmpty, !request.value.isEmpty else {
      throw RPCError(code: .invalidArgument, message: "a secret needs a name and a value")
    }
    let owner = try await checkedOwner(request.scope, request.owner, caller: caller)
    let stored = try await store.set(request.scope, owner: owner, name: name, value: request.value)
    return .with { $0.secret = stored }
  }

  func listSecrets(
    request: Inspect_Session_V1_ListSecretsRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_ListSecretsResponse {
    let caller = try await requireCaller()
    let store = try requireSecrets("ListSecrets")
    switch request.scope {
    case .unspecified:
      // Everything the caller may see: their own, and for administrators every secret.
      let all = try await store.list(scope: nil, owner: request.owner.isEmpty ? nil : request.owner)
      return .with {
        $0.secrets = all.filter { caller.isAdmin || ($0.scope == .user && $0.owner == caller.id) }
      }
    case .user:
      let owner = request.owner.isEmpty ? caller.id : request.owner
      try requireSelfOrAdmin(caller, owner)
      let listed = try await store.list(scope: .user, owner: owner)
      return .with { $0.secrets = listed }
    case .repository, .global, .UNRECOGNIZED:
      guard caller.isAdmin else {
        throw RPCError(code: .permissionDenied, message: "only administrators may list repository and global secrets")
      }
      let listed = try await store.list(scope: request.scope, owner: request.owner.isEmpty ? nil : request.owner)
      return .with { $0.secrets = listed }
    }
  }

  func deleteSecret(
    request: Inspect_Session_V1_DeleteSecretRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_DeleteSecretResponse {
    let caller = try await requireCaller()
    let store = try requireSecrets("DeleteSecret")
    let owner = try await checkedOwner(request.scope, request.owner, caller: caller)
    guard try await store.delete(request.scope, owner: owner, name: request.name) else {
      throw RPCError(
        code: .notFound,
        message:
          "no \(SecretsStore.column(request.scope)) secret '\(request.name)'\(owner.isEmpty ? "" : " of \(owner)")")
    }
    return .init()
  }

  /// The owner a secret call is about, checked: USER secrets are their owner's (or an
  /// administrator's) to change; REPOSITORY (`owner/name`) and GLOBAL ones an administrator's.
  private func checkedOwner(
    _ scope: Inspect_Session_V1_SecretScope, _ requested: String, caller: UserRecord
  ) async throws -> String {
    switch scope {
    case .user:
      let owner = requested.isEmpty ? caller.id : requested
      try requireSelfOrAdmin(caller, owner)
      guard try await database.user(id: owner) != nil else { throw Self.noUser(owner) }
      return owner
    case .repository:
      guard (try? RepositoryName(requested)) != nil else {
        throw RPCError(
          code: .invalidArgument, message: "a repository secret's owner is 'owner/name', not '\(requested)'")
      }
      guard caller.isAdmin else {
        throw RPCError(code: .permissionDenied, message: "only administrators may manage repository secrets")
      }
      return requested
    case .global:
      guard requested.isEmpty else {
        throw RPCError(code: .invalidArgument, message: "a global secret has no owner")
      }
      guard caller.isAdmin else {
        throw RPCError(code: .permissionDenied, message: "only administrators may manage global secrets")
      }
      return ""
    case .unspecified, .UNRECOGNIZED:
      throw RPCError(code: .invalidArgument, message: "scope is required: USER, REPOSITORY or GLOBAL")
    }
  }

  private func requireSecrets(_ method: String) throws -> SecretsStore {
    guard let secrets else {
      throw RPCError(code: .unimplemented, message: "UserService.\(method): this service has no secrets store")
    }
    return secrets
  }

  // MARK: - Helpers

  private func requireCaller() async throws -> UserRecord {
    try await database.requireCaller()
  }

  private func requireSelfOrAdmin(_ caller: UserRecord, _ userID: String) throws {
    guard caller.id == userID || caller.isAdmin else {
      throw RPCError(code: .permissionDenied, message: "only '\(userID)' or an administrator may do this")
    }
  }

  private static func noUser(_ id: String) -> RPCError {
    RPCError(code: .notFound, message: "no user with id '\(id)'")
  }

  static func looksLikeEmail(_ text: String) -> Bool {
    let parts = text.split(separator: "@", omittingEmptySubsequences: false)
    return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && !text.contains(" ")
  }
}

// MARK: - Protobuf forms

extension UserRecord {
  var proto: Inspect_Session_V1_User {
    .with {
      $0.id = id
      $0.displayName = displayName
      $0.email = email
      $0.githubLogin = githubLogin
      $0.createdAt = Google_Protobuf_Timestamp(date: createdAt)
      $0.admin = isAdmin
      $0.disabled = disabled
    }
  }
}

extension APITokenRecord {
  var proto: Inspect_Session_V1_ApiToken {
    .with {
      $0.id = id
      $0.userID = userId
      $0.name = name
      $0.prefix = prefix
      $0.createdAt = Google_Protobuf_Timestamp(date: createdAt)
      if let lastUsedAt { $0.lastUsedAt = Google_Protobuf_Timestamp(date: lastUsedAt) }
      if let revokedAt { $0.revokedAt = Google_Protobuf_Timestamp(date: revokedAt) }
    }
  }
}
