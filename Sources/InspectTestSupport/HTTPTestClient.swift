import Foundation
import InspectKit

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// A minimal HTTP/1.1 client for tests: one request, the whole response.
public struct HTTPTestClient: Sendable {
  public struct Response: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data
    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The body decoded as a JSON object.
    public func json() throws -> [String: Any] {
      guard let object = try JSONSerialization.jsonObject(with: body) as? [String: Any] else {
        throw ConfigurationError("the body is not a JSON object: \(text)")
      }
      return object
    }

    /// `error.code` and `error.message` of an Inspect error body.
    public func errorBody() throws -> (code: String, message: String) {
      let error = try json()["error"] as? [String: Any]
      return (error?["code"] as? String ?? "", error?["message"] as? String ?? "")
    }
  }

  public let base: HostAndPort

  public init(_ base: HostAndPort) {
    self.base = base
  }

  public func request(
    _ method: String, _ path: String, headers: [String: String] = [:], body: Data? = nil
  ) async throws -> Response {
    var request = URLRequest(url: URL(string: "http://\(base)\(path)")!)
    request.httpMethod = method
    request.timeoutInterval = 10
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    request.httpBody = body
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = response as! HTTPURLResponse
    var fields: [String: String] = [:]
    for (name, value) in http.allHeaderFields {
      fields[String(describing: name).lowercased()] = String(describing: value)
    }
    return Response(status: http.statusCode, headers: fields, body: data)
  }

  public func get(_ path: String, headers: [String: String] = [:]) async throws -> Response {
    try await request("GET", path, headers: headers)
  }
}
