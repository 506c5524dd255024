import Foundation
import GRDB
import GRPCCore
import InspectProtos
import SwiftProtobuf

/// What a participant may do in a session, strongest first.
enum Role: String, Codable, Sendable, Comparable {
  case owner, collaborator, viewer

  init?(proto: Inspect_Session_V1_Role) {
    switch proto {
    case .owner: self = .owner
    case .collaborator: self = .collaborator
    case .viewer: self = .viewer
    default: return nil
    }
  }

  var proto: Inspect_Session_V1_Role {
    switch self {
    case .owner: .owner
    case .collaborator: .collaborator
    case .viewer: .viewer
    }
  }

  private var rank: Int {
    switch self {
    case .owner: 2
    case .collaborator: 1
    case .viewer: 0
    }
  }

  /// True when this role may do what `required` may.
  func allows(_ required: Role) -> Bool { self >= required }

  static func < (lhs: Role, rhs: Role) -> Bool { lhs.rank < rhs.rank }
}

/// A person who belongs to a session, with their role.
struct ParticipantRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
  static let databaseTableName = "participant"
  var sessionId: String
  var userId: String
  var role: Role
  var joinedAt: Date
  var addedBy: String?
}

extension IndexDatabase {
  /// A session's participants, in the order they joined.
  func participants(of sessionID: String) async throws -> [ParticipantRecord] {
    try await writer.read { db in
      try ParticipantRecord.filter(Column("sessionId") == sessionID).order(Column("joinedAt"), Column("userId"))
        .fetchAll(db)
    }
  }

  /// Adds the participant or changes their role.
  func save(_ participant: ParticipantRecord) async throws {
    try await writer.write { try participant.save($0, onConflict: .replace) }
  }

  func removeParticipant(sessionID: String, userID: String) async throws {
    _ = try await writer.write { db in
      try ParticipantRecord.deleteOne(db, key: ["sessionId": sessionID, "userId": userID])
    }
  }

  /// Inserts a session with its first participants in one transaction. A child session is
  /// refused when its parent already has `childLimit` children.
  func insert(_ session: SessionRecord, participants: [ParticipantRecord], childLimit: Int = .max) async throws {
    try await writer.write { db in
      if let parentId = session.parentId {
        let siblings = try SessionRecord.filter(Column("parentId") == parentId).fetchCount(db)
        guard siblings < childLimit else {
          throw RPCError(
            code: .resourceExhausted,
            message: "session \(parentId) already has \(siblings) child sessions, the most one session may have")
        }
      }
      try session.insert(db)
      for participant in participants { try participant.save(db, onConflict: .replace) }
    }
  }
}

extension ParticipantRecord {
  func proto(user: UserRecord?, addedBy adder: UserRecord?) -> Inspect_Session_V1_Participant {
    .with {
      $0.user = user?.ref ?? .with { $0.userID = userId }
      $0.role = role.proto
      $0.joinedAt = Google_Protobuf_Timestamp(date: joinedAt)
      if let addedBy { $0.addedBy = adder?.ref ?? .with { $0.userID = addedBy } }
    }
  }
}
