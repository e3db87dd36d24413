import Foundation

/// Errors from writing files atomically.
public enum FileWriteError: Error, CustomStringConvertible {
    case open(path: String, errno: Int32)
    case write(path: String, errno: Int32)
    case rename(from: String, to: String, errno: Int32)

    public var description: String {
        switch self {
        case let .open(p, e): return "\(p): cannot create: \(String(cString: strerror(e)))"
        case let .write(p, e): return "\(p): write failed: \(String(cString: strerror(e)))"
        case let .rename(f, t, e): return "cannot rename \(f) to \(t): \(String(cString: strerror(e)))"
        }
    }
}

/// Writes `path` atomically: the bytes go to a temporary file in the same folder, which is
/// fsynced and then renamed over `path` (and the folder fsynced), so a reader sees either the
/// old file or the complete new one, never a torn write — even if the process is killed.
///
///     try AtomicFile.write(data, to: "run/last.ckpt")
///
/// `durable: false` skips both fsyncs (about 8 ms per file here): the rename still makes the
/// write atomic for readers and survives a killed process, but after a power loss or kernel
/// crash the file may be missing or torn. For caches whose entries carry their own checksum.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String, durable: Bool = true) throws {
        try write(to: path, durable: durable) { fd, tmp in
            try data.withUnsafeBytes { raw in try writeAll(fd, raw, path: tmp) }
        }
    }

    /// Streams the content through `body(fd, tempPath)`; use `writeAll` inside it.
    public static func write(to path: String, durable: Bool = true, _ body: (Int32, String) throws -> Void) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = (dir.isEmpty ? "." : dir) + "/.\((path as NSString).lastPathComponent).tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw FileWriteError.open(path: tmp, errno: errno) }
        do {
            try body(fd, tmp)
            guard !durable || fsync(fd) == 0 else { throw FileWriteError.write(path: tmp, errno: errno) }
        } catch {
            close(fd); unlink(tmp); throw error
        }
        close(fd)
        guard rename(tmp, path) == 0 else {
            let e = errno; unlink(tmp)
            throw FileWriteError.rename(from: tmp, to: path, errno: e)
        }
        guard durable else { return }
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    /// The temporary name `write` uses for `path` (`.NAME.tmp.PID` in the same folder): a file
    /// with such a name was never completed.
    public static func isTemporaryName(_ name: String) -> Bool {
        name.hasPrefix(".") && name.contains(".tmp.")
    }

    /// Writes every byte of `raw` to `fd`, retrying short writes.
    public static func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer, path: String) throws {
        var off = 0
        while off < raw.count {
            let n = Foundation.write(fd, raw.baseAddress! + off, raw.count - off)
            if n < 0 { if errno == EINTR { continue }; throw FileWriteError.write(path: path, errno: errno) }
            off += n
        }
    }
}

extension AtomicFile {
    /// A buffered file written atomically: bytes go to a temporary file beside `path`, and
    /// `commit()` fsyncs it and renames it over `path`. Several can be open at once (e.g. one per
    /// output split); one that is never committed is removed when released.
    ///
    ///     let w = try AtomicFile.Writer(path: "out/train.jsonl")
    ///     try w.append(lineBytes); try w.append([0x0A])
    ///     try w.commit()
    public final class Writer {
        public let path: String
        private let tmp: String
        private var fd: Int32
        private var buffer: [UInt8] = []
        private let flushThreshold = 1 << 20
        /// Bytes appended so far.
        public private(set) var byteCount = 0

        public init(path: String) throws {
            self.path = path
            let dir = (path as NSString).deletingLastPathComponent
            tmp = (dir.isEmpty ? "." : dir) + "/.\((path as NSString).lastPathComponent).tmp.\(getpid())"
            fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { throw FileWriteError.open(path: tmp, errno: errno) }
            buffer.reserveCapacity(flushThreshold + 4096)
        }

        deinit { abort() }

        public func append(_ bytes: UnsafeBufferPointer<UInt8>) throws {
            buffer.append(contentsOf: bytes)
            byteCount += bytes.count
            if buffer.count >= flushThreshold { try flush() }
        }

        public func append(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBufferPointer { try append($0) }
        }

        private func flush() throws {
            guard fd >= 0 else { return }
            try buffer.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: tmp) }
            buffer.removeAll(keepingCapacity: true)
        }

        /// Writes what is buffered, fsyncs, and renames the file into place.
        public func commit() throws {
            guard fd >= 0 else { return }
            do {
                try flush()
                guard fsync(fd) == 0 else { throw FileWriteError.write(path: tmp, errno: errno) }
            } catch {
                abort(); throw error
            }
            close(fd); fd = -1
            guard rename(tmp, path) == 0 else {
                let e = errno; unlink(tmp)
                throw FileWriteError.rename(from: tmp, to: path, errno: e)
            }
            let dir = (path as NSString).deletingLastPathComponent
            let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
            if dfd >= 0 { _ = fsync(dfd); close(dfd) }
        }

        /// Discards the temporary file (no effect after `commit`).
        public func abort() {
            guard fd >= 0 else { return }
            close(fd); fd = -1
            unlink(tmp)
        }
    }
}
