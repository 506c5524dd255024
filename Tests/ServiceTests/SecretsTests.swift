import Crypto
import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import SessionService

@Suite("The secrets store: AES-GCM at rest, scopes, the RPCs' rules, integration credentials")
struct SecretsTests {
  static let context = ServerContext(
    descriptor: Inspect_Session_V1_UserService.Method.SetSecret.descriptor, remotePeer: "test", localPeer: "test",
    cancellation: .init())

  func `as`<T>(_ user: UserRecord, _ body: () async throws -> T) async rethrows -> T {
    try await InspectCaller.$userID.withValue(user.id) { try await body() }
  }

  @Test("values are sealed at rest (the database file never holds one) and open only with the same key")
  func sealedAtRest() async throws {
    try await TemporaryDirectory.with { directory in
      let url = directory.appendingPathComponent("sessions/index.sqlite")
      let index = try IndexDatabase.open(at: url)
      let key = SymmetricKey(size: .bits256)
      let store = try SecretsStore(writer: index.writer, key: key)
      let value = "sntrys_TOPSECRET_4242"
      _ = try await store.set(.global, owner: "", name: "sentry.token", value: value)
      #expect(try await store.value(.global, owner: "", name: "sentry.token") == value)
      try await index.writer.writeWithoutTransaction { try $0.checkpoint(.truncate) }
      for file in try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path) {
        let bytes = try Data(contentsOf: url.deletingLastPathComponent().appendingPathComponent(file))
        #expect(bytes.range(of: Data(value.utf8)) == nil, "\(file) holds the value in clear")
      }
      let other = try SecretsStore(writer: index.writer, key: SymmetricKey(size: .bits256))
      let error = await #expect(throws: RPCError.self) {
        _ = try await other.value(.global, owner: "", name: "sentry.token")
      }
      #expect(error?.message.contains("global//sentry.token") == true)
      #expect(error?.message.contains(value) == false)
    }
  }

  @Test(
    "a turn's credentials: the global ones, overridden by the repository's; names without a dot are not integrations")
  func credentials() async throws {
    let store = try SecretsStore(writer: try IndexDatabase.inMemory().writer, key: SymmetricKey(size: .bits256))
    _ = try await store.set(.global, owner: "", name: "sentry.token", value: "global-token")
    _ = try await store.set(.global, owner: "", name: "sentry.org", value: "acme")
    _ = try await store.set(.repository, owner: "acme/web", name: "sentry.token", value: "web-token")
    _ = try await store.set(.repository, owner: "acme/web", name: "datadog.api_key", value: "dd")
    _ = try await store.set(.user, owner: "usr-1", name: "github", value: "ghp_person")
    _ = try await store.set(.global, owner: "", name: "nodot", value: "x")
    func pairs(_ repository: String) async throws -> [String] {
      try await store.credentials(repository: repository).map { "\($0.integration).\($0.name)=\($0.value)" }
    }
    #expect(try await pairs("acme/web") == ["datadog.api_key=dd", "sentry.org=acme", "sentry.token=web-token"])
    #expect(try await pairs("acme/api") == ["sentry.org=acme", "sentry.token=global-token"])
  }

  @Test("people manage their own secrets; repository and global ones are for administrators; values never come back")
  func rules() async throws {
    let index = try IndexDatabase.inMemory()
    let service = UserService(
      database: index, secrets: try SecretsStore(writer: index.writer, key: SymmetricKey(size: .bits256)))
    let admin = try await index.createUser(displayName: "Ada", email: "", githubLogin: "", isAdmin: true)
    let bob = try await index.createUser(displayName: "Bob", email: "", githubLogin: "", isAdmin: false)
    func code(_ user: UserRecord, _ body: () async throws -> Void) async -> RPCError.Code? {
      do {
        try await self.as(user) { try await body() }
        return nil
      } catch let error as RPCError {
        return error.code
      } catch {
        return .unknown
      }
    }
    let own = try await `as`(bob) {
      try await service.setSecret(
        request: .with {
          $0.scope = .user; $0.name = "github"; $0.value = "ghp_bob"
        }, context: Self.context)
    }
    #expect(own.secret.owner == bob.id)
    #expect(
      await code(bob) {
        _ = try await service.setSecret(
          request: .with {
            $0.scope = .user; $0.owner = admin.id; $0.name = "github"; $0.value = "x"
          }, context: Self.context)
      } == .permissionDenied)
    #expect(
      await code(bob) {
        _ = try await service.setSecret(
          request: .with {
            $0.scope = .global; $0.name = "sentry.token"; $0.value = "x"
          }, context: Self.context)
      } == .permissionDenied)
    #expect(
      await code(admin) {
        _ = try await service.setSecret(
          request: .with {
            $0.scope = .repository; $0.owner = "not a repo"; $0.name = "sentry.token"; $0.value = "x"
          }, context: Self.context)
      } == .invalidArgument)
    #expect(
      await code(admin) {
        _ = try await service.setSecret(
          request: .with {
            $0.name = "a"; $0.value = "b"
          }, context: Self.context)
      } == .invalidArgument)
    _ = try await `as`(admin) {
      try await service.setSecret(
        request: .with {
          $0.scope = .repository; $0.owner = "acme/web"; $0.name = "sentry.token"; $0.value = "sntrys_x"
        }, context: Self.context)
    }
    let bobSees = try await `as`(bob) { try await service.listSecrets(request: .init(), context: Self.context) }
    #expect(bobSees.secrets.map(\.name) == ["github"])
    let adminSees = try await `as`(admin) { try await service.listSecrets(request: .init(), context: Self.context) }
    #expect(Set(adminSees.secrets.map(\.name)) == ["github", "sentry.token"])
    #expect(
      await code(bob) {
        _ = try await service.listSecrets(request: .with { $0.scope = .global }, context: Self.context)
      } == .permissionDenied)
    #expect(
      await code(bob) {
        _ = try await service.deleteSecret(
          request: .with {
            $0.scope = .user; $0.name = "nothing"
          }, context: Self.context)
      } == .notFound)
    _ = try await `as`(bob) {
      try await service.deleteSecret(
        request: .with {
          $0.scope = .user; $0.name = "github"
        }, context: Self.context)
    }
    let after = try await `as`(bob) { try await service.listSecrets(request: .init(), context: Self.context) }
    #expect(after.secrets.isEmpty)
  }

  @Test("the key comes from INSPECT_SECRETS_KEY, a key file, or a file made once in the data directory (mode 0600)")
  func keys() throws {
    let temporary = try TemporaryDirectory("inspect-secrets-key")
    defer { temporary.remove() }
    let directory = temporary.url
    let raw = Data((0..<32).map { UInt8($0) })
    let fromEnvironment = try SecretsStore.key(
      environment: ["INSPECT_SECRETS_KEY": raw.base64EncodedString()], directory: directory)
    #expect(fromEnvironment.withUnsafeBytes { Data($0) } == raw)
    let file = directory.appendingPathComponent("key.bin")
    try raw.write(to: file)
    let fromFile = try SecretsStore.key(environment: ["INSPECT_SECRETS_KEY_FILE": file.path], directory: directory)
    #expect(fromFile.withUnsafeBytes { Data($0) } == raw)
    let made = try SecretsStore.key(environment: [:], directory: directory)
    let again = try SecretsStore.key(environment: [:], directory: directory)
    #expect(made.withUnsafeBytes { Data($0) } == again.withUnsafeBytes { Data($0) })
    let attributes = try FileManager.default.attributesOfItem(
      atPath: directory.appendingPathComponent(SecretsStore.keyFileName).path)
    #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    #expect(throws: ConfigurationError.self) {
      try SecretsStore.key(environment: ["INSPECT_SECRETS_KEY": "too-short"], directory: directory)
    }
  }
}
