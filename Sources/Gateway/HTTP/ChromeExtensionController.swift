import Foundation
import HTTPTypes
import Hummingbird
import InspectKit
import NIOCore

/// The Chrome extension's self-hosted updates, for rolling it out with managed browser policy
/// (`ExtensionInstallForcelist` = `<id>;https://<gateway>/chrome/updates.xml`):
/// `GET /chrome/updates.xml` (Google's update manifest: the extension's id, version and where
/// its `.crx` is) and `GET /chrome/inspect.crx`. Both are served from
/// `INSPECT_CHROME_EXTENSION_DIR`, which `scripts/package-chrome-extension.sh --key …` fills
/// (`inspect.crx`, `extension.json` with the id and version). No token: browsers fetch them.
struct ChromeExtensionController: Sendable {
  let directory: URL?
  /// The Gateway's public URL (`INSPECT_PUBLIC_URL`), for the `.crx` link; else the request's
  /// own host.
  let publicURL: String?

  init(environment: [String: String]) {
    directory = environment["INSPECT_CHROME_EXTENSION_DIR"].flatMap {
      $0.isEmpty ? nil : URL(fileURLWithPath: $0, isDirectory: true)
    }
    publicURL = environment["INSPECT_PUBLIC_URL"].flatMap { value in
      var url = value.trimmingCharacters(in: .whitespaces)
      while url.hasSuffix("/") { url.removeLast() }
      return url.isEmpty ? nil : url
    }
  }

  func register(on router: Router<GatewayRequestContext>) {
    router.get("chrome/updates.xml") { request, _ in try self.updates(request) }
    router.get("chrome/inspect.crx") { _, _ in try self.package() }
  }

  struct Release: Decodable {
    let id: String
    let version: String
  }

  private func release() throws -> (Release, URL) {
    guard let directory else {
      throw APIError(
        .notFound,
        "the Chrome extension is not published here: set INSPECT_CHROME_EXTENSION_DIR to the output of "
          + "scripts/package-chrome-extension.sh --key …")
    }
    let file = directory.appendingPathComponent("extension.json")
    guard let data = FileManager.default.contents(atPath: file.path),
      let release = try? JSONDecoder().decode(Release.self, from: data),
      release.id.count == 32, release.id.allSatisfy({ ("a"..."p").contains($0) }),
      !release.version.isEmpty, release.version.allSatisfy({ $0.isNumber || $0 == "." })
    else {
      throw APIError(
        .internalServerError, code: "INTERNAL",
        "the published extension's extension.json is missing or is not {\"id\": <32 letters a–p>, \"version\": <dotted numbers>}"
      )
    }
    return (release, directory.appendingPathComponent("inspect.crx"))
  }

  func updates(_ request: Request) throws -> Response {
    let (release, _) = try release()
    let base: String
    if let publicURL {
      base = publicURL
    } else if let host = request.head.authority,
      host.allSatisfy({ $0.isLetter || $0.isNumber || ".-:[]".contains($0) }), host.count <= 255
    {
      // Without INSPECT_PUBLIC_URL, the host the browser asked (only host characters).
      base = "http://\(host)"
    } else {
      throw APIError(.badRequest, "the Host header is not a host name; set INSPECT_PUBLIC_URL")
    }
    let codebase = Self.escapeXML("\(base)/chrome/inspect.crx")
    let xml = """
      <?xml version='1.0' encoding='UTF-8'?>
      <gupdate xmlns='http://www.google.com/update2/response' protocol='2.0'>
        <app appid='\(release.id)'>
          <updatecheck codebase='\(codebase)' version='\(release.version)' />
        </app>
      </gupdate>

      """
    return Response(
      status: .ok, headers: [.contentType: "application/xml; charset=utf-8"],
      body: .init(byteBuffer: ByteBuffer(string: xml)))
  }

  static func escapeXML(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "'", with: "&apos;")
      .replacingOccurrences(of: "\"", with: "&quot;")
  }

  func package() throws -> Response {
    let (_, file) = try release()
    guard let data = FileManager.default.contents(atPath: file.path) else {
      throw APIError(.notFound, "inspect.crx is not published: run scripts/package-chrome-extension.sh --key … again")
    }
    return Response(
      status: .ok, headers: [.contentType: "application/x-chrome-extension"],
      body: .init(byteBuffer: ByteBuffer(data: data)))
  }
}
