import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import SessionService

@Suite("UserService and the index database")
struct UserServiceTests {
  let database: IndexDatabase
  let service: UserService
  let admin: UserRecord
  let person: UserRecord

  init() async throws {
    database = try IndexDatabase.inMemory()
    service = UserService(database: database)
    admin = try await database.createUser(
      displayName: "Ada", email: "ada@example.com", githubLogin: "ada", isAdmin: true)
    person = try await database.createUser(
      displayName: "Bob", email: "bob@example.com", githubLogin: "bob", isAdmin: false)
  }

  func `as`<T>(_ user: UserRecord?, _ body: () async throws -> T) async rethrows -> T {
    try await InspectCaller.$userID.withValue(user?.id) { try await body() }
  }

  static let context = ServerContext(
    descriptor: Inspect_Session_V1_UserService.Method.ListUsers.descriptor, remotePeer: "test", localPeer: "test",
    cancellation: .init())

  @Test("only administrators create and list users; others get PERMISSION_DENIED")
  func adminOnly() async throws {
    let created = try await `as`(admin) {
      try await service.createUser(
        request: .with {
          $0.displayName = "Cy"; $0.email = "cy@example.com"
        }, context: Self.context)
    }
    #expect(created.user.displayName == "Cy")
    let denied = await #expect(throws: RPCError.self) {
      try await self.as(person) { _ = try await service.listUsers(request: .init(), context: Self.context) }
    }
    #expect(denied?.code == .permissionDenied)
    let anonymous = await #expect(throws: RPCError.self) {
      try await self.as(nil) { _ = try await service.listUsers(request: .init(), context: Self.context) }
    }
    #expect(anonymous?.code == .unauthenticated)
  }

  @Test("users are validated: empty names, malformed emails and duplicates are rejected")
  func validation() async throws {
    try await `as`(admin) {
      let empty = await #expect(throws: RPCError.self) {
        _ = try await service.createUser(request: .with { $0.displayName = "  " }, context: Self.context)
      }
      #expect(empty?.code == .invalidArgument)
      let email = await #expect(throws: RPCError.self) {
        _ = try await service.createUser(
          request: .with {
            $0.displayName = "X"; $0.email = "not-an-email"
          }, context: Self.context)
      }
      #expect(email?.code == .invalidArgument)
      let duplicate = await #expect(throws: RPCError.self) {
        _ = try await service.createUser(
          request: .with {
            $0.displayName = "B2"; $0.email = "bob@example.com"
          }, context: Self.context)
      }
      #expect(duplicate?.code == .alreadyExists)
    }
  }

  @Test("ListUsers pages in creation order with a page token")
  func paging() async throws {
    try await `as`(admin) {
      for index in 0..<5 {
        _ = try await service.createUser(request: .with { $0.displayName = "U\(index)" }, context: Self.context)
      }
      var names: [String] = []
      var token = ""
      repeat {
        let page = try await service.listUsers(
          request: .with {
            $0.pageSize = 3; $0.pageToken = token
          }, context: Self.context)
        #expect(page.users.count <= 3)
        names += page.users.map(\.displayName)
        token = page.nextPageToken
      } while !token.isEmpty
      #expect(names == ["Ada", "Bob", "U0", "U1", "U2", "U3", "U4"])
      let bad = await #expect(throws: RPCError.self) {
        _ = try await service.listUsers(request: .with { $0.pageToken = "../x" }, context: Self.context)
      }
      #expect(bad?.code == .invalidArgument)
    }
  }

  @Test("a person manages their own tokens but not someone else's")
  func tokenOwnership() async throws {
    let own = try await `as`(person) {
      try await service.createToken(request: .with { $0.name = "cli" }, context: Self.context)
    }
    #expect(own.token.userID == person.id)
    let authenticated = try await service.authenticateToken(
      request: .with { $0.token = own.secret }, context: Self.context)
    #expect(authenticated.user.id == person.id)
    #expect(authenticated.tokenID == own.token.id)

    let adminToken = try await `as`(admin) {
      try await service.createToken(request: .with { $0.name = "ops" }, context: Self.context)
    }
    let denied = await #expect(throws: RPCError.self) {
      try await self.as(person) {
        _ = try await service.revokeToken(request: .with { $0.tokenID = adminToken.token.id }, context: Self.context)
      }
    }
    #expect(denied?.code == .permissionDenied)

    let revoked = try await `as`(person) {
      try await service.revokeToken(request: .with { $0.tokenID = own.token.id }, context: Self.context)
    }
    #expect(revoked.token.hasRevokedAt)
    let refused = await #expect(throws: RPCError.self) {
      _ = try await service.authenticateToken(request: .with { $0.token = own.secret }, context: Self.context)
    }
    #expect(refused?.code == .unauthenticated)
    let listed = try await `as`(person) {
      try await service.listTokens(request: .with { $0.includeRevoked = true }, context: Self.context)
    }
    #expect(listed.tokens.map(\.id) == [own.token.id])
    let unknown = await #expect(throws: RPCError.self) {
      try await self.as(admin) {
        _ = try await service.revokeToken(request: .with { $0.tokenID = "tok-nope" }, context: Self.context)
      }
    }
    #expect(unknown?.code == .notFound)
  }

  @Test("only the hash of a token is stored")
  func secretsAreHashed() async throws {
    let (token, secret) = try await database.createToken(userId: person.id, name: "x")
    let stored = try await database.token(id: token.id)
    #expect(stored?.secretHash == TokenSecret.hash(secret))
    #expect(stored?.secretHash.contains(secret) == false)
    #expect(secret.count == 5 + 43)
  }

  @Test("the secrets store is not built: its RPCs answer UNIMPLEMENTED")
  func secretsUnimplemented() async throws {
    let error = await #expect(throws: RPCError.self) {
      try await self.as(admin) { _ = try await service.setSecret(request: .init(), context: Self.context) }
    }
    #expect(error?.code == .unimplemented)
  }
}

@Suite("SessionService's files on disk")
struct SessionStorageTests {
  @Test("the index is WAL with synchronous=FULL, and the development token file is private and works")
  func indexAndDevelopmentToken() async throws {
    try await TemporaryDirectory.with { directory in
      let built = try await SessionServiceApp.build(testConfiguration(.session, dataDirectory: directory))
      _ = built
      let index = try IndexDatabase.open(at: SessionPaths(directory).index)
      #expect(try await index.synchronousMode() == 2)
      let journal = try await index.writer.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }
      #expect(journal == "wal")
      let file = directory.appendingPathComponent("dev-token")
      let attributes = try FileManager.default.attributesOfItem(atPath: file.path)
      #expect((attributes[.posixPermissions] as? Int) == 0o600)
      let secret = try String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
      let found = try await index.authenticate(secret: secret)
      #expect(found?.0.isAdmin == true)

      // A second start keeps the same users and does not write a new token.
      _ = try await SessionServiceApp.build(testConfiguration(.session, dataDirectory: directory))
      #expect(try await index.userCount() == 1)
      #expect(try String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == secret)
    }
  }
}
