import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// A git server for tests speaking git's smart HTTP protocol: `git http-backend` (CGI) behind
/// Hummingbird on 127.0.0.1, serving the bare repositories under `root` (`<owner>/<name>.git`).
/// Like GitHub with an installation token, it accepts only HTTP basic authentication as
/// `x-access-token:<token>` with a token `authorize` accepts, and records every request.
public final class GitHTTPServer: Sendable {
  public struct Recorded: Sendable {
    public var method: String
    public var path: String
    /// The token presented, if any.
    public var token: String?
    public var status: Int
  }

  public let root: URL
  private let authorize: @Sendable (String) -> Bool
  private let recorded = Mutex<[Recorded]>([])

  public init(root: URL, authorize: @escaping @Sendable (_ token: String) -> Bool) {
    self.root = root
    self.authorize = authorize
  }

  public var requests: [Recorded] { recorded.withLock { $0 } }

  public func run<T: Sendable>(_ body: @Sendable (_ baseURL: String) async throws -> T) async throws -> T {
    let router = Router()
    router.get("**") { request, _ in try await self.serve(request) }
    router.post("**") { request, _ in try await self.serve(request) }
    return try await withHTTPStandIn(router, body)
  }

  private func serve(_ request: Request) async throws -> Response {
    let token = Self.token(request.headers[.authorization])
    func record(_ status: Int) {
      recorded.withLock {
        $0.append(Recorded(method: request.method.rawValue, path: request.uri.path, token: token, status: status))
      }
    }
    guard let token, authorize(token) else {
      record(401)
      return Response(
        status: .unauthorized, headers: [.wwwAuthenticate: #"Basic realm="git""#],
        body: .init(byteBuffer: ByteBuffer(string: "Invalid username or password.\n")))
    }
    let input = try await request.body.collect(upTo: 64 << 20)
    var environment = [
      "GIT_PROJECT_ROOT": root.path, "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": request.uri.path,
      "REQUEST_METHOD": request.method.rawValue, "QUERY_STRING": request.uri.query ?? "",
      "REMOTE_USER": "x-access-token", "REMOTE_ADDR": "127.0.0.1", "CONTENT_LENGTH": "\(input.readableBytes)",
      "PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
    ]
    if let type = request.headers[.contentType] { environment["CONTENT_TYPE"] = type }
    if let encoding = request.headers[.contentEncoding] { environment["HTTP_CONTENT_ENCODING"] = encoding }
    if let protocolHeader = request.headers[HTTPField.Name("Git-Protocol")!] {
      environment["GIT_PROTOCOL"] = protocolHeader
    }
    let output = try await Self.backend(environment: environment, input: Data(buffer: input))
    let (status, headers, body) = Self.parseCGI(output)
    record(status)
    var response = Response(status: .init(code: status), body: .init(byteBuffer: ByteBuffer(bytes: body)))
    for (name, value) in headers {
      if let field = HTTPField.Name(name) { response.headers[field] = value }
    }
    return response
  }

  /// The token of `Basic base64(x-access-token:<token>)`.
  static func token(_ authorization: String?) -> String? {
    guard let authorization, authorization.lowercased().hasPrefix("basic "),
      let decoded = Data(base64Encoded: String(authorization.dropFirst(6))),
      let text = String(data: decoded, encoding: .utf8), text.hasPrefix("x-access-token:")
    else { return nil }
    return String(text.dropFirst("x-access-token:".count))
  }

  /// Runs `git http-backend` with the request body on its standard input.
  static func backend(environment: [String: String], input: Data) async throws -> Data {
    try await withCheckedThrowingContinuation { continuation in
      Thread.detachNewThread {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = ["http-backend"]
        process.environment = environment
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        do {
          try process.run()
        } catch {
          continuation.resume(throwing: error)
          return
        }
        // Write the body on its own thread so a large answer cannot block on a full pipe.
        Thread.detachNewThread {
          stdin.fileHandleForWriting.write(input)
          try? stdin.fileHandleForWriting.close()
        }
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        continuation.resume(returning: output)
      }
    }
  }

  /// Splits CGI output into status, headers and body.
  static func parseCGI(_ output: Data) -> (Int, [(String, String)], Data) {
    let bytes = [UInt8](output)
    var end = 0
    var separator = 0
    for index in 0..<bytes.count {
      if index + 3 < bytes.count, bytes[index...index + 3].elementsEqual([13, 10, 13, 10]) {
        (end, separator) = (index, 4)
        break
      }
      if index + 1 < bytes.count, bytes[index] == 10, bytes[index + 1] == 10 {
        (end, separator) = (index, 2)
        break
      }
    }
    guard separator > 0 else { return (500, [], output) }
    var status = 200
    var headers: [(String, String)] = []
    for line in String(decoding: bytes[0..<end], as: UTF8.self).split(whereSeparator: \.isNewline) {
      guard let colon = line.firstIndex(of: ":") else { continue }
      let name = line[..<colon].trimmingCharacters(in: .whitespaces)
      let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
      if name.lowercased() == "status" {
        status = Int(value.prefix(3)) ?? 500
      } else {
        headers.append((name, value))
      }
    }
    return (status, headers, Data(bytes[(end + separator)...]))
  }
}
