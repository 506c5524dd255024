import HTTPTypes
import Hummingbird
import NIOCore

/// The web client: its pages (`/`, `/sessions/{id}`, `/stats` all answer the single page, which
/// routes by path) and its script and style sheet, from ``WebAssets``. Served without a token
/// (the page asks for one); the Content-Security-Policy lets it load and connect only to its own
/// origin.
enum WebClient {
  static let securityPolicy =
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
    + "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

  static func register(on router: Router<GatewayRequestContext>) {
    for page in ["/", "/stats", "/sessions/:id"] {
      router.get(RouterPath(page)) { _, _ in response("index.html") }
    }
    for file in ["app.js", "app.css"] {
      router.get(RouterPath(file)) { _, _ in response(file) }
    }
  }

  static func response(_ name: String) -> Response {
    guard let file = WebAssets.files[name] else {
      return Response(status: .notFound)
    }
    var headers: HTTPFields = [.contentType: file.contentType, .cacheControl: "no-cache"]
    headers[HTTPField.Name("Content-Security-Policy")!] = securityPolicy
    headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
    headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
    return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: file.body)))
  }
}
