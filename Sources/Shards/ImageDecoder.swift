import Foundation

/// The image formats this build decodes.
public enum ImageFormat: String, Sendable {
    case png = "PNG"
    case jpeg = "JPEG"
}

/// Decodes PNG or JPEG bytes, recognised by their magic bytes (never by a file name or an HTTP
/// content type), with one set of rules and errors for both:
///
///     let image = try ImageDecoder.decode(bytes, channels: 3, source: "https://host/a.jpg")
///
/// - 0 bytes → `ImageError.empty`; a PNG or JPEG that stops early → `.truncated`; broken
///   content → `.corrupt`; more than `maxPixels` pixels declared in the header → `.tooLarge`
///   (checked before allocating); anything else (GIF, WebP, an HTML error page, ...) →
///   `.unsupportedFormat` naming what it looks like.
/// - See `PNGCodec` and `JPEGCodec` for the colour conversion rules.
public enum ImageDecoder {
    /// The format `bytes` start with, or nil. A prefix of a signature counts (so a file cut
    /// inside its signature is reported as a truncated PNG or JPEG).
    public static func format(of bytes: UnsafeRawBufferPointer) -> ImageFormat? {
        if bytes.count >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8 && (bytes.count == 2 || bytes[2] == 0xFF) { return .jpeg }
        let n = min(bytes.count, PNGCodec.signature.count)
        if n >= 4 && (0..<n).allSatisfy({ bytes[$0] == PNGCodec.signature[$0] }) { return .png }
        return nil
    }

    /// Decodes `bytes` into an 8-bit image with `channels` channels (1 = gray, 3 = RGB).
    public static func decode(_ bytes: UnsafeRawBufferPointer, channels: Int,
                              maxPixels: Int = PNGCodec.defaultMaxPixels, source: String) throws -> Image {
        guard bytes.count > 0 else { throw ImageError.empty(source: source) }
        switch format(of: bytes) {
        case .png: return try PNGCodec.decode(bytes, channels: channels, maxPixels: maxPixels, source: source)
        case .jpeg: return try JPEGCodec.decode(bytes, channels: channels, maxPixels: maxPixels, source: source)
        case nil: throw ImageError.unsupportedFormat(source: source, format: describe(bytes))
        }
    }

    /// Convenience: decodes an array of bytes.
    public static func decode(_ bytes: [UInt8], channels: Int, maxPixels: Int = PNGCodec.defaultMaxPixels,
                              source: String) throws -> Image {
        try bytes.withUnsafeBytes { try decode($0, channels: channels, maxPixels: maxPixels, source: source) }
    }

    /// Convenience: decodes bytes held in `Data`.
    public static func decode(_ data: Data, channels: Int, maxPixels: Int = PNGCodec.defaultMaxPixels,
                              source: String) throws -> Image {
        try data.withUnsafeBytes { try decode($0, channels: channels, maxPixels: maxPixels, source: source) }
    }

    /// What unrecognised bytes look like: a known non-decodable format, text (e.g. an HTML error
    /// page served with status 200), or the first bytes in hex.
    static func describe(_ b: UnsafeRawBufferPointer) -> String {
        if let other = PNGCodec.sniffOtherFormat(b) { return other }
        let head = b.prefix(16)
        let printable = head.allSatisfy { ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        if printable {
            let text = String(decoding: head, as: UTF8.self)
                .replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
            return "text, not an image (starts with \"\(text)\")"
        }
        return "unknown (first bytes " + head.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ") + ")"
    }
}
