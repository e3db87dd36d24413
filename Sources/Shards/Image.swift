#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A decoded 8-bit image, interleaved HWC: pixel `(x, y)` channel `c` is
/// `pixels[(y * width + x) * channels + c]`.
public struct Image: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// An image of the given size with every byte set to `fill`.
    public init(width: Int, height: Int, channels: Int, fill: UInt8 = 0) {
        self.init(width: width, height: height, channels: channels,
                  pixels: [UInt8](repeating: fill, count: width * height * channels))
    }

    /// The sample at column `x`, row `y`, channel `c`.
    @inlinable public subscript(x: Int, y: Int, c: Int) -> UInt8 {
        get { pixels[(y * width + x) * channels + c] }
        set { pixels[(y * width + x) * channels + c] = newValue }
    }
}

/// Why an image could not be read or decoded. Every case carries `source` (the file path or
/// URL the bytes came from, or a caller-chosen label) so a message can name the bad file.
/// The reasons are distinct: empty, wrong type (`notPNG` / `unsupportedFormat`), `truncated`,
/// `corrupt`, `tooLarge` (a decompression bomb), `io`.
public enum ImageError: Error, CustomStringConvertible, Equatable {
    /// The bytes do not start with the PNG signature (and are no other format we recognise);
    /// only from `PNGCodec.decode` called directly — `ImageDecoder` reports `unsupportedFormat`.
    case notPNG(source: String)
    /// The bytes are not an image format this build decodes (GIF, WebP, HTML, ...); `format`
    /// names what the magic bytes look like.
    case unsupportedFormat(source: String, format: String)
    /// A PNG or JPEG (`format`) whose data ends early; `reason` is the decoder's message.
    case truncated(source: String, format: String, reason: String)
    /// A PNG or JPEG (`format`) whose content is broken (bad CRC, bad zlib or Huffman data,
    /// bogus markers, ...); `reason` is the decoder's message or ours.
    case corrupt(source: String, format: String, reason: String)
    /// The header declares more than `limit` pixels (a decompression bomb, or simply too big);
    /// rejected before any pixel memory is allocated.
    case tooLarge(source: String, width: Int, height: Int, limit: Int)
    /// Zero bytes.
    case empty(source: String)
    /// The file could not be opened or read.
    case io(source: String, errno: Int32)
    /// Encoding failed (bad image dimensions or buffer, or the encoder's message).
    case encodeFailed(reason: String)

    /// The path, URL or label the failing bytes came from.
    public var source: String {
        switch self {
        case let .notPNG(s), let .unsupportedFormat(s, _), let .truncated(s, _, _), let .corrupt(s, _, _),
             let .tooLarge(s, _, _, _), let .empty(s), let .io(s, _):
            return s
        case .encodeFailed: return "<encode>"
        }
    }

    public var description: String {
        switch self {
        case let .notPNG(s):
            return "\(s): not a PNG file (bad signature)"
        case let .unsupportedFormat(s, f):
            return "\(s): unsupported image format: \(f) (PNG and JPEG are supported)"
        case let .truncated(s, f, r):
            return "\(s): truncated \(f): \(r)"
        case let .corrupt(s, f, r):
            return "\(s): corrupt \(f): \(r)"
        case let .tooLarge(s, w, h, l):
            return "\(s): image too large: \(w)x\(h) = \(w * h) pixels exceeds the limit of \(l)"
        case let .empty(s):
            return "\(s): empty file (0 bytes)"
        case let .io(s, e):
            return "\(s): \(String(cString: strerror(e)))"
        case let .encodeFailed(r):
            return "image encode failed: \(r)"
        }
    }
}
