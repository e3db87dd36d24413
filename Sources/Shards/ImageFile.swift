#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading image files from disk. The format is recognised from the content, not the file
/// name (PNG or JPEG, see `ImageDecoder`); other formats give `ImageError.unsupportedFormat`.
/// Every error names the path.
public enum ImageFile {
    /// Loads and decodes the image at `path` into `channels` (1 = gray, 3 = RGB) 8-bit channels;
    /// see `ImageDecoder` for the errors and the `maxPixels` guard.
    public static func load(path: String, channels: Int, maxPixels: Int = PNGCodec.defaultMaxPixels) throws -> Image {
        let bytes = try readBytes(path: path)
        return try ImageDecoder.decode(bytes, channels: channels, maxPixels: maxPixels, source: path)
    }

    /// The whole content of `path` (errors: `ImageError.io` with the path and errno).
    public static func readBytes(path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.io(source: path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ImageError.io(source: path, errno: errno) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw ImageError.io(source: path, errno: EISDIR) }
        var bytes = [UInt8]()
        var capacity = max(Int(st.st_size), 0) + 1  // +1 so a file that grew is noticed
        bytes.reserveCapacity(capacity)
        var total = 0
        while true {
            if total == capacity { capacity *= 2 }
            bytes.append(contentsOf: repeatElement(0, count: capacity - bytes.count))
            let n = bytes.withUnsafeMutableBytes { raw in
                read(fd, raw.baseAddress! + total, capacity - total)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw ImageError.io(source: path, errno: errno)
            }
            if n == 0 { break }
            total += n
        }
        bytes.removeSubrange(total...)
        return bytes
    }
}
