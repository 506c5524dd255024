import Foundation

/// Identifiers of `docs/CONTRACTS.md`: a kind prefix, a dash and a 26-character lowercase ULID,
/// safe as a file name, a URL segment and a git ref. Sessions also name their home shard:
/// `ses-<shard>-<ulid>`.
public enum IdentifierKind: String, Sendable, CaseIterable {
  case session = "ses"
  case user = "usr"
  case message = "msg"
  case turn = "turn"
  case toolCall = "tc"
  case artifact = "art"
  case image = "img"
  case sandbox = "sbx"
  case snapshot = "snp"
  case token = "tok"
  case summary = "sum"
}

public enum Identifier {
  /// A new identifier of `kind` (sessions on `shard`, 0 on one machine).
  public static func make(_ kind: IdentifierKind, shard: Int = 0, now: Date = Date()) -> String {
    kind == .session ? "ses-\(shard)-\(ulid(now: now))" : "\(kind.rawValue)-\(ulid(now: now))"
  }

  /// True when `text` is a well-formed identifier of `kind`.
  public static func isValid(_ text: String, kind: IdentifierKind) -> Bool {
    var parts = text.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.first.map(String.init) == kind.rawValue else { return false }
    parts.removeFirst()
    if kind == .session {
      guard parts.count == 2, let shard = parts.first, !shard.isEmpty, shard.allSatisfy(\.isNumber) else {
        return false
      }
      parts.removeFirst()
    }
    guard parts.count == 1, let body = parts.first, body.count == 26 else { return false }
    return body.allSatisfy { crockford.contains($0) }
  }

  /// A lowercase ULID: 48 bits of milliseconds since 1970 then 80 random bits, Crockford base32.
  public static func ulid(now: Date = Date()) -> String {
    let millis = UInt64(max(0, now.timeIntervalSince1970 * 1000))
    var generator = SystemRandomNumberGenerator()
    let randomHigh = UInt64(generator.next() as UInt16)
    let randomLow = generator.next() as UInt64
    // 128-bit value: time (48) | random (80), written as 26 base32 digits (130 bits, top 2 zero).
    let high = (millis << 16) | randomHigh
    let low = randomLow
    var characters: [Character] = []
    characters.reserveCapacity(26)
    for index in 0..<26 {
      let shift = 125 - index * 5
      let value: UInt64
      if shift >= 64 {
        value = (high >> UInt64(shift - 64)) & 31
      } else if shift > 59 {
        value = ((high << UInt64(64 - shift)) | (low >> UInt64(shift))) & 31
      } else {
        value = (low >> UInt64(shift)) & 31
      }
      characters.append(crockfordDigits[Int(value)])
    }
    return String(characters)
  }

  private static let crockfordDigits = Array("0123456789abcdefghjkmnpqrstvwxyz")
  private static let crockford = Set(crockfordDigits)
}
