import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import SwiftProtobuf

/// `inspect.session.v1.UserService`: people and their API tokens. The Gateway resolves bearer
/// tokens here; every other call acts for ``InspectCaller/userID`` and is checked against it.
struct UserService: Inspect_Session_V1_UserService.SimpleServiceProtocol {
  let database: IndexDatabase

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
      throw RPCError(code: .alreadyExists, message: "a user with this email or GitHub login already exists")
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

  // MARK: - Secrets (not built yet)

  func setSecret(
    request: Inspect_Session_V1_SetSecretRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_SetSecretResponse {
    throw Self.secretsMissing("SetSecret")
  }

  func listSecrets(
    request: Inspect_Session_V1_ListSecretsRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_ListSecretsResponse {
    throw Self.secretsMissing("ListSecrets")
  }

  func deleteSecret(
    request: Inspect_Session_V1_DeleteSecretRequest, context: ServerContext
  ) async throws -> Inspect_Session_V1_DeleteSecretResponse {
    throw Self.secretsMissing("DeleteSecret")
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

  private static func secretsMissing(_ method: String) -> RPCError {
    RPCError(
      code: .unimplemented,
      message:
        "UserService.\(method) is not implemented yet: the encrypted secrets store arrives with the GitHub integration")
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
