import Foundation
import InspectKit
import Testing

@Suite("Service configuration: flags, environment and defaults")
struct ConfigurationTests {
  @Test("defaults are the ports of CONTRACTS.md")
  func defaults() throws {
    let session = try ServiceConfiguration.resolve(for: .session, environment: ["HOME": "/home/x"])
    #expect(session.host == "127.0.0.1")
    #expect(session.grpcPort == 50051)
    #expect(session.httpPort == 51051)
    #expect(session.dataDirectory.path == "/home/x/.local/share/inspect")
    let gateway = try ServiceConfiguration.resolve(for: .gateway, environment: [:])
    #expect(gateway.grpcPort == 50050)
    #expect(gateway.httpPort == 8080)
    #expect(session.peers[.modelRouter] == HostAndPort(host: "127.0.0.1", port: 50053))
  }

  @Test("environment variables override defaults and flags override the environment")
  func precedence() throws {
    let environment = [
      "INSPECT_SANDBOX_HOST": "0.0.0.0", "INSPECT_SANDBOX_GRPC_PORT": "6000", "INSPECT_SANDBOX_ADMIN_PORT": "6001",
      "INSPECT_DATA_DIR": "/srv/inspect", "INSPECT_SESSION_ADDR": "session.internal:7000",
      "INSPECT_GATEWAY_HTTP_PORT": "9090",
    ]
    let fromEnvironment = try ServiceConfiguration.resolve(for: .sandbox, environment: environment)
    #expect(fromEnvironment.host == "0.0.0.0")
    #expect(fromEnvironment.grpcPort == 6000)
    #expect(fromEnvironment.httpPort == 6001)
    #expect(fromEnvironment.dataDirectory.path == "/srv/inspect")
    #expect(fromEnvironment.peers[.session] == HostAndPort(host: "session.internal", port: 7000))
    #expect(try ServiceConfiguration.resolve(for: .gateway, environment: environment).httpPort == 9090)

    let flags = try ServiceOptions.parse(["--grpc-port", "7100", "--admin-port", "0", "--data-dir", "/tmp/d"])
    let fromFlags = try flags.resolve(for: .sandbox, environment: environment)
    #expect(fromFlags.grpcPort == 7100)
    #expect(fromFlags.httpPort == 0)
    #expect(fromFlags.dataDirectory.path == "/tmp/d")
  }

  @Test("bad values are rejected with a message naming the variable")
  func badValues() throws {
    #expect(throws: ConfigurationError.self) {
      try ServiceConfiguration.resolve(for: .session, environment: ["INSPECT_SESSION_GRPC_PORT": "fifty"])
    }
    let error = #expect(throws: ConfigurationError.self) {
      try ServiceConfiguration.resolve(for: .session, environment: ["INSPECT_SANDBOX_ADDR": "no-port"])
    }
    #expect(error?.description.contains("INSPECT_SANDBOX_ADDR") == true)
    #expect(throws: ConfigurationError.self) {
      try ServiceConfiguration.resolve(for: .session, environment: ["INSPECT_SESSION_ADMIN_PORT": "70000"])
    }
    #expect(throws: ConfigurationError.self) {
      try ServiceConfiguration.resolve(for: .session, environment: ["INSPECT_LOG_LEVEL": "loud"])
    }
  }

  @Test("host:port parsing handles names, IPv4 and bracketed IPv6")
  func hostAndPort() {
    #expect(HostAndPort("session:50051") == HostAndPort(host: "session", port: 50051))
    #expect(HostAndPort("[::1]:50051") == HostAndPort(host: "::1", port: 50051))
    #expect(HostAndPort("[::1]:50051")?.description == "[::1]:50051")
    #expect(HostAndPort("127.0.0.1") == nil)
    #expect(HostAndPort(":50051") == nil)
    #expect(HostAndPort("h:0") == nil)
  }

  @Test(
    "a secret comes from its variable, else from the file <variable>_FILE names; an unreadable or empty file is refused"
  )
  func secretFromFile() throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-secret-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: file) }
    try Data("  s3cret\n".utf8).write(to: file)
    #expect(try ["X": "direct", "X_FILE": file.path].valueOrFile("X") == "direct")
    #expect(try ["X_FILE": file.path].valueOrFile("X") == "s3cret")
    #expect(try [String: String]().valueOrFile("X") == nil)
    let missing = #expect(throws: ConfigurationError.self) { try ["X_FILE": "/nonexistent/secret"].valueOrFile("X") }
    #expect(missing?.description == "X_FILE=/nonexistent/secret cannot be read")
    try Data("\n".utf8).write(to: file)
    let empty = #expect(throws: ConfigurationError.self) { try ["X_FILE": file.path].valueOrFile("X") }
    #expect(empty?.description == "X_FILE=\(file.path) is empty")
  }
}
