import CSandbox
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// File operations on a sandbox's workspace from the host, confined to it by the kernel.
///
/// A path is first normalized lexically: it must be relative (or under `/workspace`, the
/// workspace's path inside the sandbox) and its `..` may not climb out
/// (``SandboxError/invalid(_:)``). Every open then goes through `openat2` with
/// `RESOLVE_BENEATH` from a descriptor of the workspace root, so a symbolic link that leads
/// outside — including one the sandbox swaps in between a check and a use — is refused by the
/// kernel (``SandboxError/permissionDenied(_:)``). Directories are created one level at a time
/// under such descriptors; listings never follow symbolic links.
struct HostWorkspace: Sendable {
  /// The workspace on the host (a sandbox's merged overlay).
  let root: URL

  /// The most a read returns, and what a read without a limit returns.
  static let maxRead: UInt64 = 3 << 20
  /// The largest content a write accepts (gRPC messages are limited to 4 MiB).
  static let maxWrite = 3 << 20
  /// The most entries a listing returns.
  static let maxEntries = 10_000

  /// `path` as components relative to the workspace root.
  static func components(_ path: String) throws -> [String] {
    var text = path
    if text == "/workspace" || text.hasPrefix("/workspace/") {
      text.removeFirst("/workspace".count)
      text = String(text.drop { $0 == "/" })
    } else if text.hasPrefix("/") {
      throw SandboxError.invalid("\(path): an absolute path must be under /workspace")
    }
    guard !text.contains("\0") else { throw SandboxError.invalid("the path contains a NUL byte") }
    var parts: [String] = []
    for part in text.split(separator: "/", omittingEmptySubsequences: true) {
      switch part {
      case ".": continue
      case "..":
        guard !parts.isEmpty else { throw SandboxError.invalid("\(path) leads outside the workspace") }
        parts.removeLast()
      default: parts.append(String(part))
      }
    }
    return parts
  }

  /// The normalized relative path (`.` for the root).
  static func relative(_ path: String) throws -> String {
    let parts = try components(path)
    return parts.isEmpty ? "." : parts.joined(separator: "/")
  }

  // MARK: - Reading

  func readFile(_ path: String, offset: UInt64, limit: UInt64) throws -> FileContent {
    let relative = try Self.relative(path)
    // O_NONBLOCK: opening a FIFO the sandbox made must not wait for a writer.
    let fd = try open(relative, O_RDONLY | O_NONBLOCK | O_NOCTTY, display: path)
    defer { Glibc.close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw Self.failure(errno, path) }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
      throw SandboxError.invalid(
        "\(path) is \((info.st_mode & S_IFMT) == S_IFDIR ? "a directory" : "not a regular file")")
    }
    let size = UInt64(info.st_size)
    let wanted = min(limit == 0 ? Self.maxRead : limit, Self.maxRead)
    let start = min(offset, size)
    let count = Int(min(wanted, size - start))
    var content = Data(count: count)
    var done = 0
    try content.withUnsafeMutableBytes { buffer in
      while done < count {
        let read = pread(fd, buffer.baseAddress! + done, count - done, off_t(start) + off_t(done))
        if read < 0, errno == EINTR { continue }
        guard read >= 0 else { throw Self.failure(errno, path) }
        if read == 0 { break }
        done += read
      }
    }
    content.count = done
    return FileContent(content: content, size: size, truncated: start + UInt64(done) < size)
  }

  // MARK: - Writing

  @discardableResult
  func writeFile(_ path: String, content: Data, mode: UInt32?, createParents: Bool) throws -> UInt64 {
    guard content.count <= Self.maxWrite else {
      throw SandboxError.exhausted("\(path): \(content.count) bytes is more than the \(Self.maxWrite) a write accepts")
    }
    let parts = try Self.components(path)
    guard !parts.isEmpty else { throw SandboxError.invalid("\(path) is the workspace itself, not a file") }
    if createParents, parts.count > 1 { try makeDirectories(Array(parts.dropLast()), display: path) }
    // No O_TRUNC before the type is known: a FIFO or device must be refused, not opened.
    let fd = try open(
      parts.joined(separator: "/"), O_WRONLY | O_CREAT | O_NONBLOCK | O_NOCTTY, mode: mode ?? 0o644, display: path)
    defer { Glibc.close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw Self.failure(errno, path) }
    guard (info.st_mode & S_IFMT) == S_IFREG else { throw SandboxError.invalid("\(path) is not a regular file") }
    guard ftruncate(fd, 0) == 0 else { throw Self.failure(errno, path) }
    if let mode, fchmod(fd, mode_t(mode & 0o7777)) != 0 { throw Self.failure(errno, path) }
    var done = 0
    try content.withUnsafeBytes { buffer in
      while done < buffer.count {
        let written = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
        if written < 0, errno == EINTR { continue }
        guard written > 0 else { throw Self.failure(errno, path) }
        done += written
      }
    }
    return UInt64(done)
  }

  /// Creates each missing directory of `parts`, one level at a time under a confined descriptor
  /// of its parent (`mkdirat` never follows the name it creates).
  private func makeDirectories(_ parts: [String], display: String) throws {
    var parent = try open(".", O_RDONLY | O_DIRECTORY, display: display)
    defer { Glibc.close(parent) }
    for part in parts {
      if mkdirat(parent, part, 0o755) != 0, errno != EEXIST { throw Self.failure(errno, display) }
      let next = csandbox_open_beneath(parent, part, O_RDONLY | O_DIRECTORY, 0)
      guard next >= 0 else { throw Self.failure(errno, display) }
      Glibc.close(parent)
      parent = next
    }
  }

  // MARK: - Listing

  func listFiles(_ path: String, recursive: Bool, maxEntries: Int) throws -> FileListing {
    let relative = try Self.relative(path)
    let fd = try open(relative, O_RDONLY | O_DIRECTORY, display: path)
    let limit = min(maxEntries <= 0 ? Self.maxEntries : maxEntries, Self.maxEntries)
    var listing = FileListing(entries: [], truncated: false)
    try Self.list(fd, prefix: relative == "." ? "" : relative + "/", recursive: recursive, limit: limit, into: &listing)
    listing.entries.sort { $0.path < $1.path }
    return listing
  }

  /// Lists the directory `fd` (and closes it), descending without following symbolic links.
  private static func list(
    _ fd: Int32, prefix: String, recursive: Bool, limit: Int, into listing: inout FileListing
  ) throws {
    guard let directory = fdopendir(fd) else {
      Glibc.close(fd)
      throw failure(errno, prefix)
    }
    defer { closedir(directory) }
    var subdirectories: [String] = []
    while let entry = readdir(directory) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name == "." || name == ".." { continue }
      var info = stat()
      guard fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
      guard listing.entries.count < limit else {
        listing.truncated = true
        return
      }
      let kind: FileListing.Entry.Kind =
        switch info.st_mode & S_IFMT {
        case S_IFREG: .file
        case S_IFDIR: .directory
        case S_IFLNK: .symlink
        default: .other
        }
      listing.entries.append(
        .init(
          path: prefix + name, kind: kind, size: UInt64(info.st_size), mode: UInt32(info.st_mode & 0o7777),
          modified: Date(
            timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec) + TimeInterval(info.st_mtim.tv_nsec) / 1e9)))
      if recursive, kind == .directory { subdirectories.append(name) }
    }
    for name in subdirectories {
      let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
      guard child >= 0 else { continue }
      try list(child, prefix: prefix + name + "/", recursive: true, limit: limit, into: &listing)
      if listing.truncated { return }
    }
  }

  // MARK: - Opening

  /// Opens `relative` (already normalized) beneath the workspace root.
  private func open(_ relative: String, _ flags: Int32, mode: UInt32 = 0, display: String) throws -> Int32 {
    let rootFD = Glibc.open(root.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard rootFD >= 0 else { throw SandboxError.preconditionFailed("the workspace is gone") }
    defer { Glibc.close(rootFD) }
    let fd = csandbox_open_beneath(rootFD, relative, flags, mode_t(mode))
    guard fd >= 0 else { throw Self.failure(errno, display) }
    return fd
  }

  /// The error for `code` while handling `path`.
  static func failure(_ code: Int32, _ path: String) -> SandboxError {
    switch code {
    case ENOENT: .notFound("\(path) does not exist")
    case ENXIO: .invalid("\(path) is not a regular file")
    case EXDEV, ELOOP: .permissionDenied("\(path) leads outside the workspace through a symbolic link")
    case ENOTDIR: .invalid("\(path): a part of it is not a directory")
    case EISDIR: .invalid("\(path) is a directory")
    case EACCES, EPERM, EROFS: .permissionDenied("\(path): \(String(cString: strerror(code)))")
    case ENOSPC, EDQUOT: .exhausted("\(path): \(String(cString: strerror(code)))")
    default: .failed("\(path): \(String(cString: strerror(code)))")
    }
  }
}
