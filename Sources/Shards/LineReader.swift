#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Streams a file line by line in fixed-size chunks (the file is never held whole in memory).
/// Lines are split on `\n`; a trailing `\r` is removed; the last line needs no newline.
final class LineReader {
    enum Failure: Error { case open(Int32), read(Int32) }

    private let fd: Int32
    private var buffer: [UInt8]
    private var start = 0, end = 0
    private var eof = false
    /// 1-based number of the line last returned.
    private(set) var lineNumber = 0

    init(path: String, chunkSize: Int = 1 << 20) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.open(errno) }
        var st = stat()
        if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
            _ = sysClose(fd)
            throw Failure.open(EISDIR)
        }
        buffer = [UInt8](repeating: 0, count: chunkSize)
    }

    deinit { _ = sysClose(fd) }

    /// Calls `body` with the next line's bytes (valid only during the call); returns false at EOF.
    func next<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) throws -> R? {
        while true {
            // Look for a newline in the buffered bytes.
            let found: Int? = buffer.withUnsafeBufferPointer { b -> Int? in
                guard end > start,
                      let hit = memchr(b.baseAddress! + start, 0x0A, end - start) else { return nil }
                return UnsafeRawPointer(hit) - UnsafeRawPointer(b.baseAddress!)
            }
            if let nl = found {
                let lineStart = start
                start = nl + 1
                lineNumber += 1
                return try emit(from: lineStart, to: nl, body)
            }
            if eof {
                guard end > start else { return nil }
                let lineStart = start
                start = end
                lineNumber += 1
                return try emit(from: lineStart, to: end, body)
            }
            // Need more data: compact, grow if one line fills the buffer, then read.
            if start > 0 {
                let pending = end - start
                if pending > 0 {
                    buffer.withUnsafeMutableBufferPointer { b in
                        _ = memmove(b.baseAddress!, b.baseAddress! + start, pending)
                    }
                }
                start = 0; end = pending
            }
            if end == buffer.count { buffer.append(contentsOf: repeatElement(0, count: buffer.count)) }
            let n = buffer.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress! + end, raw.count - end) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure.read(errno)
            }
            if n == 0 { eof = true } else { end += n }
        }
    }

    private func emit<R>(from a: Int, to b: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try buffer.withUnsafeBufferPointer { buf in
            var e = b
            if e > a && buf[e - 1] == 0x0D { e -= 1 }
            return try body(UnsafeBufferPointer(rebasing: buf[a..<e]))
        }
    }
}

/// `close(2)` (a method named `close` would shadow the free function).
func sysClose(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.close(fd)
    #else
    return Darwin.close(fd)
    #endif
}
