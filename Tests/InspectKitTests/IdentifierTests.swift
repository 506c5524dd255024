import Foundation
import InspectKit
import Testing

@Suite("Identifiers")
struct IdentifierTests {
  @Test("identifiers are a prefix and a 26-character lowercase ULID; sessions carry their shard")
  func format() {
    let session = Identifier.make(.session)
    #expect(session.hasPrefix("ses-0-"))
    #expect(session.count == "ses-0-".count + 26)
    #expect(Identifier.isValid(session, kind: .session))
    let user = Identifier.make(.user)
    #expect(user.hasPrefix("usr-"))
    #expect(Identifier.isValid(user, kind: .user))
    #expect(user == user.lowercased())
    #expect(!Identifier.isValid(user, kind: .session))
    #expect(!Identifier.isValid("usr-../../etc/passwd", kind: .user))
    #expect(!Identifier.isValid("usr-" + String(repeating: "u", count: 26), kind: .user))  // u is not Crockford
  }

  @Test("identifiers sort by creation time and do not collide")
  func orderAndUniqueness() {
    let early = Identifier.make(.message, now: Date(timeIntervalSince1970: 1_700_000_000))
    let late = Identifier.make(.message, now: Date(timeIntervalSince1970: 1_700_000_001))
    #expect(early < late)
    let many = Set((0..<10_000).map { _ in Identifier.make(.toolCall) })
    #expect(many.count == 10_000)
  }

  @Test("the time part of a ULID encodes milliseconds since 1970")
  func timeEncoding() {
    let digits = Array("0123456789abcdefghjkmnpqrstvwxyz")
    func decodeTime(_ ulid: String) -> UInt64 {
      ulid.prefix(10).reduce(0) { $0 * 32 + UInt64(digits.firstIndex(of: $1)!) }
    }
    #expect(Identifier.ulid(now: Date(timeIntervalSince1970: 0)).prefix(10) == "0000000000")
    #expect(decodeTime(Identifier.ulid(now: Date(timeIntervalSince1970: 1_700_000_000))) == 1_700_000_000_000)
    #expect(decodeTime(Identifier.ulid(now: Date(timeIntervalSince1970: 4_102_444_800))) == 4_102_444_800_000)
  }
}
