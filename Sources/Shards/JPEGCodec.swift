import CTurboJPEG
import Foundation

/// JPEG decoding and encoding through libjpeg-turbo's TurboJPEG API (one `tjhandle` per call,
/// so it is safe from several threads at once).
///
///     let image = try JPEGCodec.decode(bytes, channels: 3, source: url)
///
/// Decoding is strict, because libjpeg is lenient:
/// - the header is read first and width × height is checked against `maxPixels` **before** any
///   pixel memory is allocated (a few hundred bytes can declare 65535×65535 pixels);
/// - every libjpeg warning is an error (`TJFLAG_STOPONWARNING`): libjpeg-turbo 2.1.5 "decodes"
///   a JPEG whose scan is cut short with only the warning "Premature end of JPEG file" and fills
///   the rest with grey. Such a file gives `ImageError.truncated`; other warnings and errors
///   (bad Huffman data, bogus markers, ...) give `ImageError.corrupt`;
/// - CMYK / YCCK JPEGs (which TurboJPEG cannot convert to RGB) give `unsupportedFormat`.
///
/// Colour conversion is libjpeg's: colour → gray keeps the luma (Y) plane, which is the
/// ITU-R 601 luma that PIL's `convert("L")` computes from RGB (up to rounding); gray → RGB
/// replicates the sample. The accurate integer IDCT is used (PIL's default too). EXIF
/// orientation is not applied (nor is it by PIL's `Image.open`).
public enum JPEGCodec {
    /// The first three bytes of every JPEG (SOI marker + the first marker's 0xFF).
    public static let signature: [UInt8] = [0xFF, 0xD8, 0xFF]

    /// Decodes JPEG `bytes` into an 8-bit image with `channels` channels (1 = gray, 3 = RGB).
    /// `source` names the bytes in errors (a path or URL).
    public static func decode(_ bytes: UnsafeRawBufferPointer, channels: Int,
                              maxPixels: Int = PNGCodec.defaultMaxPixels, source: String) throws -> Image {
        precondition(channels == 1 || channels == 3, "JPEGCodec.decode: channels must be 1 or 3, not \(channels)")
        guard bytes.count > 0, let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw ImageError.empty(source: source)
        }
        guard let handle = tjInitDecompress() else {
            throw ImageError.corrupt(source: source, format: "JPEG", reason: "cannot create a TurboJPEG decompressor")
        }
        defer { tjDestroy(handle) }

        var width: Int32 = 0, height: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
        if tjDecompressHeader3(handle, base, UInt(bytes.count), &width, &height, &subsamp, &colorspace) != 0 {
            throw failure(handle, bytes, source: source)
        }
        guard width > 0, height > 0 else {
            // libjpeg returns an empty header when the data ends before the frame header.
            if !endsWithEOI(bytes) {
                throw ImageError.truncated(source: source, format: "JPEG", reason: "data ends before the frame header (\(bytes.count) bytes)")
            }
            throw ImageError.corrupt(source: source, format: "JPEG", reason: "zero width or height")
        }
        // Decompression-bomb guard: decide from the header alone, before allocating.
        let pixelCount = Int(width) * Int(height)
        if pixelCount > maxPixels {
            throw ImageError.tooLarge(source: source, width: Int(width), height: Int(height), limit: maxPixels)
        }
        if colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue) {
            throw ImageError.unsupportedFormat(source: source, format: "CMYK JPEG")
        }

        let pixelFormat = channels == 1 ? TJPF_GRAY : TJPF_RGB
        let flags = ctj_flag_stop_on_warning() | ctj_flag_accurate_dct()
        var status: Int32 = 0
        let pixels = [UInt8](unsafeUninitializedCapacity: pixelCount * channels) { buf, count in
            status = tjDecompress2(handle, base, UInt(bytes.count), buf.baseAddress, width,
                                   width * Int32(channels), height, Int32(pixelFormat.rawValue), flags)
            if status != 0 { buf.baseAddress?.initialize(repeating: 0, count: pixelCount * channels) }
            count = pixelCount * channels
        }
        if status != 0 { throw failure(handle, bytes, source: source) }
        return Image(width: Int(width), height: Int(height), channels: channels, pixels: pixels)
    }

    /// Convenience: decodes an array of JPEG bytes.
    public static func decode(_ bytes: [UInt8], channels: Int, maxPixels: Int = PNGCodec.defaultMaxPixels,
                              source: String) throws -> Image {
        try bytes.withUnsafeBytes { try decode($0, channels: channels, maxPixels: maxPixels, source: source) }
    }

    /// Encodes an 8-bit gray (1 channel, stored as a grayscale JPEG) or RGB (3 channels, 4:2:0
    /// chroma subsampling) image at `quality` (1...100). Used to make test and benchmark files.
    public static func encode(_ image: Image, quality: Int = 90) throws -> [UInt8] {
        guard image.channels == 1 || image.channels == 3 else {
            throw ImageError.encodeFailed(reason: "JPEG needs 1 or 3 channels, not \(image.channels)")
        }
        guard image.width > 0, image.height > 0, image.width <= 65_535, image.height <= 65_535,
              image.pixels.count == image.width * image.height * image.channels else {
            throw ImageError.encodeFailed(reason: "bad JPEG image: \(image.width)x\(image.height)x\(image.channels) with \(image.pixels.count) bytes")
        }
        guard (1...100).contains(quality) else { throw ImageError.encodeFailed(reason: "JPEG quality \(quality) not in 1...100") }
        guard let handle = tjInitCompress() else { throw ImageError.encodeFailed(reason: "cannot create a TurboJPEG compressor") }
        defer { tjDestroy(handle) }
        let subsamp = image.channels == 1 ? TJSAMP_GRAY : TJSAMP_420
        let format = image.channels == 1 ? TJPF_GRAY : TJPF_RGB
        var out: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let status = image.pixels.withUnsafeBufferPointer { px in
            tjCompress2(handle, px.baseAddress, Int32(image.width), Int32(image.width * image.channels),
                        Int32(image.height), Int32(format.rawValue), &out, &size, Int32(subsamp.rawValue), Int32(quality), 0)
        }
        defer { if let out { tjFree(out) } }
        guard status == 0, let out else {
            throw ImageError.encodeFailed(reason: "JPEG: " + message(handle))
        }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }

    // MARK: - Helpers

    static func message(_ handle: tjhandle) -> String {
        guard let text = tjGetErrorStr2(handle) else { return "libjpeg error" }
        let s = String(cString: text)
        return s.isEmpty ? "libjpeg error" : s
    }

    /// Whether the data ends with the EOI marker (FF D9), as a complete JPEG does (files with
    /// bytes appended after EOI exist, so this alone does not make a file bad).
    static func endsWithEOI(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 2 && bytes[bytes.count - 2] == 0xFF && bytes[bytes.count - 1] == 0xD9
    }

    /// Classifies a failed header read or decompression: data that stops early (libjpeg's
    /// "Premature end of JPEG file", or any failure of data without a final EOI marker) is
    /// `truncated`; anything else (an error or any other warning) is `corrupt`.
    static func failure(_ handle: tjhandle, _ bytes: UnsafeRawBufferPointer, source: String) -> ImageError {
        let text = message(handle)
        let isWarning = tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue)
        if text.contains("Premature end of JPEG file") || !endsWithEOI(bytes) {
            return .truncated(source: source, format: "JPEG", reason: text)
        }
        return .corrupt(source: source, format: "JPEG", reason: isWarning ? "\(text) (libjpeg warning)" : text)
    }
}
