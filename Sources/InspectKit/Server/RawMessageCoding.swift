import GRPCCore

/// Passes message bytes through untouched: used where a server must answer or forward a method
/// without decoding it (unbuilt RPCs, the Gateway's proxy of SessionService).
public struct RawSerializer: MessageSerializer {
  public init() {}
  public func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes {
    Bytes(message)
  }
}

/// See ``RawSerializer``.
public struct RawDeserializer: MessageDeserializer {
  public init() {}
  public func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
    serializedMessageBytes.withUnsafeBytes { Array($0) }
  }
}
