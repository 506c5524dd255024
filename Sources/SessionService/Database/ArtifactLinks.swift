import Crypto
import Foundation
import InspectKit

/// Signed links to one artifact each, for places a bearer token cannot go (a pull request's
/// body on GitHub): `<public-url>/artifacts/<session>/<artifact>?expires=<unix>&signature=<hex>`,
/// where the signature is an HMAC-SHA256 of `<session>/<artifact>/<expires>` with a key derived
/// from the secrets key (so links survive restarts and die with that key).
struct ArtifactLinks: Sendable {
  /// How long a link in a pull request's body works.
  static let lifetime: TimeInterval = 90 * 24 * 3600

  let key: SymmetricKey

  init(secretsKey: SymmetricKey) {
    key = SymmetricKey(
      data: HMAC<SHA256>.authenticationCode(for: Data("inspect artifact links v1".utf8), using: secretsKey))
  }

  func signature(session: String, artifact: String, expires: Int64) -> String {
    Data(HMAC<SHA256>.authenticationCode(for: Self.message(session, artifact, expires), using: key)).hexString
  }

  /// The query of a link valid until `now + lifetime`.
  func query(session: String, artifact: String, now: Date = Date()) -> String {
    let expires = Int64(now.addingTimeInterval(Self.lifetime).timeIntervalSince1970)
    return "expires=\(expires)&signature=\(signature(session: session, artifact: artifact, expires: expires))"
  }

  /// True when `signature` is this key's for the artifact and `expires` has not passed
  /// (compared in constant time).
  func verify(session: String, artifact: String, expires: Int64, signature: String, now: Date = Date()) -> Bool {
    guard expires > Int64(now.timeIntervalSince1970), let mac = Data(hex: signature), mac.count == 32 else {
      return false
    }
    return HMAC<SHA256>.isValidAuthenticationCode(
      mac, authenticating: Self.message(session, artifact, expires), using: key)
  }

  private static func message(_ session: String, _ artifact: String, _ expires: Int64) -> Data {
    Data("\(session)/\(artifact)/\(expires)".utf8)
  }
}
