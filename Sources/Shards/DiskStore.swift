import Crypto
import Foundation
import Support

/// The files of a cache's disk tier: fetched bytes, content-addressed by the SHA-256 of their
/// URL, each with a header that carries the URL and the SHA-256 of the bytes.
///
/// Layout: `DIR/ab/abcdef…` (the 64 hex digits of SHA-256(url), fanned out by the first two),
/// plus `DIR/.lock`, held with `flock` while a cache uses the folder (one process per folder:
/// each rank needs its own). An entry is
///
///     "DTRCACHE" | u32 version (1) | u32 url length | u64 payload length | 32-byte SHA-256(payload) | url | payload
///
/// (integers little-endian). Entries are written atomically (temporary file + rename); an
/// interrupted write leaves only a temporary file, which `scan` deletes. A read checks the
/// header, the URL, the length and the checksum, and deletes an entry that fails.
final class DiskStore {
    static let magic = Array("DTRCACHE".utf8)
    static let version: UInt32 = 1
    static let fixedHeader = 8 + 4 + 4 + 8 + 32

    let directory: String
    let durable: Bool
    private var lockFD: Int32 = -1

    /// An entry found by `scan`.
    struct Entry {
        var url: String
        var size: Int
        var modified: Double
    }

    enum ReadResult {
        case hit([UInt8])
        case missing
        /// The entry failed its checks and was deleted.
        case corrupt(reason: String)
    }

    init(directory: String, durable: Bool) throws {
        self.directory = directory
        self.durable = durable
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CacheError.directory(path: directory, reason: "cannot create: \(error.localizedDescription)")
        }
        let lockPath = directory + "/.lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CacheError.directory(path: directory, reason: "cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw CacheError.directory(path: directory, reason: "in use by another cache (each rank needs its own cache folder)")
        }
        lockFD = fd
    }

    deinit { if lockFD >= 0 { close(lockFD) } }

    static func name(for url: String) -> String {
        SHA256.hash(data: Array(url.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    func path(for url: String) -> String {
        let n = Self.name(for: url)
        return "\(directory)/\(n.prefix(2))/\(n)"
    }

    /// The size of the file `write` makes for `url` with `payloadCount` bytes.
    static func fileSize(url: String, payloadCount: Int) -> Int { fixedHeader + url.utf8.count + payloadCount }

    // MARK: Write

    /// Writes the entry for `url` atomically; returns the file's size.
    @discardableResult
    func write(url: String, payload: [UInt8]) throws -> Int {
        let urlBytes = Array(url.utf8)
        var header = Self.magic
        header.reserveCapacity(Self.fixedHeader + urlBytes.count)
        Self.append(&header, UInt64(Self.version), bytes: 4)
        Self.append(&header, UInt64(urlBytes.count), bytes: 4)
        Self.append(&header, UInt64(payload.count), bytes: 8)
        header += Array(SHA256.hash(data: payload))
        header += urlBytes
        let path = path(for: url)
        let dir = (path as NSString).deletingLastPathComponent
        if mkdir(dir, 0o755) != 0 && errno != EEXIST {
            throw CacheError.io(path: dir, reason: "cannot create: \(String(cString: strerror(errno)))")
        }
        do {
            try AtomicFile.write(to: path, durable: durable) { fd, tmp in
                try header.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: tmp) }
                try payload.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: tmp) }
            }
        } catch {
            throw CacheError.io(path: path, reason: "\(error)")
        }
        return header.count + payload.count
    }

    // MARK: Read

    /// The verified payload for `url`; a file that fails a check is deleted.
    func read(url: String) -> ReadResult {
        let path = path(for: url)
        let bytes: [UInt8]
        do {
            bytes = try ImageFile.readBytes(path: path)
        } catch let ImageError.io(_, e) where e == ENOENT {
            return .missing
        } catch {
            unlink(path)
            return .corrupt(reason: "\(error)")
        }
        switch Self.parse(bytes, fileSize: bytes.count) {
        case let .failure(invalid):
            unlink(path)
            return .corrupt(reason: invalid.reason)
        case let .success(h):
            guard h.url == url else {
                unlink(path)
                return .corrupt(reason: "entry holds \(h.url)")
            }
            let payload = Array(bytes[h.payloadOffset...])
            guard Array(SHA256.hash(data: payload)) == h.checksum else {
                unlink(path)
                return .corrupt(reason: "checksum mismatch")
            }
            return .hit(payload)
        }
    }

    struct Header {
        var url: String
        var payloadOffset: Int
        var checksum: [UInt8]
    }

    /// Parses and checks the header at the start of `bytes` against the file's total size.
    struct Invalid: Error, ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
        var reason: String
        init(stringLiteral value: String) { reason = value }
        init(stringInterpolation: DefaultStringInterpolation) { reason = String(stringInterpolation: stringInterpolation) }
    }

    static func parse(_ bytes: [UInt8], fileSize: Int) -> Result<Header, Invalid> {
        guard bytes.count >= fixedHeader else { return .failure("short header (\(bytes.count) bytes)") }
        guard Array(bytes[0..<8]) == magic else { return .failure("bad magic") }
        let version = read(bytes, at: 8, count: 4)
        guard version == UInt64(Self.version) else { return .failure("unknown version \(version)") }
        let urlCount = Int(read(bytes, at: 12, count: 4))
        let payloadCount = read(bytes, at: 16, count: 8)
        guard payloadCount <= UInt64(Int.max / 2), fixedHeader + urlCount <= bytes.count else {
            return .failure("bad lengths")
        }
        guard fixedHeader + urlCount + Int(payloadCount) == fileSize else {
            return .failure("size \(fileSize) does not match the header (\(fixedHeader + urlCount + Int(payloadCount)))")
        }
        let checksum = Array(bytes[24..<56])
        guard let url = String(validating: bytes[fixedHeader..<(fixedHeader + urlCount)], as: UTF8.self) else {
            return .failure("URL is not UTF-8")
        }
        return .success(Header(url: url, payloadOffset: fixedHeader + urlCount, checksum: checksum))
    }

    // MARK: Scan and delete

    /// Every well-formed entry in the folder, oldest first. Deletes temporary files of
    /// interrupted writes and entries whose header is bad, whose name does not match their URL
    /// or whose size does not match their header (the payload checksum is checked on read).
    /// Files that do not look like entries are left alone.
    func scan() -> [Entry] {
        var found: [Entry] = []
        let fm = FileManager.default
        guard let subdirs = try? fm.contentsOfDirectory(atPath: directory) else { return [] }
        for sub in subdirs where sub.count == 2 && sub.allSatisfy(\.isHexDigit) {
            let subPath = directory + "/" + sub
            guard let names = try? fm.contentsOfDirectory(atPath: subPath) else { continue }
            for name in names {
                let path = subPath + "/" + name
                if AtomicFile.isTemporaryName(name) { unlink(path); continue }
                guard name.count == 64, name.hasPrefix(sub), name.allSatisfy(\.isHexDigit) else { continue }
                var st = stat()
                guard stat(path, &st) == 0 else { continue }
                guard var head = Self.readPrefix(path, count: Self.fixedHeader + 512) else { unlink(path); continue }
                if head.count >= Self.fixedHeader {   // a long URL: read the whole header
                    let urlCount = Int(Self.read(head, at: 12, count: 4))
                    if Self.fixedHeader + urlCount > head.count && urlCount < 1 << 20 {
                        head = Self.readPrefix(path, count: Self.fixedHeader + urlCount) ?? head
                    }
                }
                switch Self.parse(head, fileSize: Int(st.st_size)) {
                case .failure:
                    unlink(path)
                case let .success(h) where Self.name(for: h.url) != name:
                    unlink(path)
                case let .success(h):
                    let mtime = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
                    found.append(Entry(url: h.url, size: Int(st.st_size), modified: mtime))
                }
            }
        }
        found.sort { $0.modified < $1.modified }
        return found
    }

    func delete(url: String) { unlink(path(for: url)) }

    private static func readPrefix(_ path: String, count: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: count)
        let n = buf.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, count) }
        guard n >= 0 else { return nil }
        return Array(buf.prefix(n))
    }

    private static func append(_ out: inout [UInt8], _ v: UInt64, bytes: Int) {
        for i in 0..<bytes { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    private static func read(_ b: [UInt8], at offset: Int, count: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<count { v |= UInt64(b[offset + i]) << (8 * UInt64(i)) }
        return v
    }
}
