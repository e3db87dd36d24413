import CPNG
import Foundation

/// PNG decoding and encoding through libpng's simplified API (`png_image_*`), which reports
/// errors through `png_image.message` instead of `longjmp`, so it is safe to call from Swift
/// and from several threads at once (each call uses its own `png_image`).
///
/// Decoding rules (chosen to match what PIL's `Image.open(f).convert("L" / "RGB")` gives, which
/// is what a torchvision `ImageFolder` pipeline sees):
/// - any PNG colour type and bit depth is accepted: gray, gray+alpha, RGB, RGBA, palette (with or
///   without `tRNS`), 1/2/4/8/16 bits, interlaced (Adam7);
/// - **alpha is dropped, not composited** (the colour samples are returned as stored, like PIL's
///   `convert("RGB")`);
/// - 16-bit samples are scaled to 8 bits (`v * 255 / 65535`, rounded), treating them as sRGB
///   encoded like 8-bit data (libpng's `PNG_IMAGE_FLAG_16BIT_sRGB`; without it libpng would
///   assume 16-bit data is linear and gamma-encode it);
/// - colour → gray uses ITU-R 601-2 luma in PIL's integer form
///   `(19595 R + 38470 G + 7471 B + 32768) >> 16`; gray → RGB replicates the sample;
/// - unlike PIL, a `gAMA` chunk that differs from sRGB is honoured (libpng converts to sRGB).
///
/// Corruption in the header or image data (bad CRC, bad zlib stream) is an error
/// (`ImageError.corrupt`; data that ends early gives `.truncated`);
/// libpng stops reading after the image data, so a missing or damaged `IEND` (or anything after
/// the last `IDAT`) is not noticed. libpng warnings (e.g. a bad ancillary chunk, which it
/// skips) do not fail the decode.
///
/// The pixel count from the header is checked against `maxPixels` before any pixel memory is
/// allocated or any image data is inflated, so a small file claiming 50000×50000 pixels (a
/// decompression bomb) is rejected cheaply with `ImageError.tooLarge`.
public enum PNGCodec {
    /// The 8-byte PNG signature.
    public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Default cap on width × height (64 megapixels).
    public static let defaultMaxPixels = 64_000_000

    /// Decodes PNG `bytes` into an 8-bit image with `channels` channels (1 = gray, 3 = RGB).
    /// `source` names the bytes in errors (a path or URL).
    public static func decode(_ bytes: UnsafeRawBufferPointer, channels: Int,
                              maxPixels: Int = defaultMaxPixels, source: String) throws -> Image {
        precondition(channels == 1 || channels == 3, "PNGCodec.decode: channels must be 1 or 3, not \(channels)")
        guard bytes.count > 0, let base = bytes.baseAddress else { throw ImageError.empty(source: source) }
        try checkSignature(bytes, source: source)

        var image = png_image()
        image.version = cpng_image_version()
        guard png_image_begin_read_from_memory(&image, base, bytes.count) != 0 else {
            let message = messageOf(&image)
            png_image_free(&image)
            throw failure(source: source, message: message)
        }
        let width = Int(image.width), height = Int(image.height)
        // Decompression-bomb guard: decide from the header alone, before allocating.
        if width * height > maxPixels || width <= 0 || height <= 0 {
            png_image_free(&image)
            if width <= 0 || height <= 0 {
                throw ImageError.corrupt(source: source, format: "PNG", reason: "zero width or height")
            }
            throw ImageError.tooLarge(source: source, width: width, height: height, limit: maxPixels)
        }

        // Decode into the file's own 8-bit layout (keeping colour / alpha), then convert.
        let srcFormat = image.format
        let hasColor = srcFormat & cpng_format_flag_color() != 0
        let hasAlpha = srcFormat & cpng_format_flag_alpha() != 0
        var format = hasColor ? cpng_format_rgb() : cpng_format_gray()
        if hasAlpha { format |= cpng_format_flag_alpha() }
        image.format = format
        image.flags |= cpng_image_flag_16bit_srgb()
        let naturalChannels = (hasColor ? 3 : 1) + (hasAlpha ? 1 : 0)
        let size = Int(cpng_image_size(&image))
        guard size == width * height * naturalChannels else {
            png_image_free(&image)
            throw ImageError.corrupt(source: source, format: "PNG", reason: "unexpected buffer size \(size)")
        }

        var failure: String?
        let decoded = [UInt8](unsafeUninitializedCapacity: size) { buf, count in
            if png_image_finish_read(&image, nil, buf.baseAddress, 0, nil) == 0 {
                failure = messageOf(&image)
                buf.baseAddress!.initialize(repeating: 0, count: size)
            }
            count = size
        }
        png_image_free(&image)  // finish_read already frees; harmless and covers every path
        if let failure { throw Self.failure(source: source, message: failure) }

        let pixels = convert(decoded, pixelCount: width * height, from: naturalChannels, to: channels)
        return Image(width: width, height: height, channels: channels, pixels: pixels)
    }

    /// Convenience: decodes an array of PNG bytes.
    public static func decode(_ bytes: [UInt8], channels: Int, maxPixels: Int = defaultMaxPixels,
                              source: String) throws -> Image {
        try bytes.withUnsafeBytes { try decode($0, channels: channels, maxPixels: maxPixels, source: source) }
    }

    /// Convenience: decodes PNG bytes held in `Data`.
    public static func decode(_ data: Data, channels: Int, maxPixels: Int = defaultMaxPixels,
                              source: String) throws -> Image {
        try data.withUnsafeBytes { try decode($0, channels: channels, maxPixels: maxPixels, source: source) }
    }

    /// Encodes an 8-bit image (1 = gray, 2 = gray+alpha, 3 = RGB, 4 = RGBA channels) as a
    /// non-interlaced PNG with libpng's default compression.
    public static func encode(_ image: Image) throws -> [UInt8] {
        let format: png_uint_32
        switch image.channels {
        case 1: format = cpng_format_gray()
        case 2: format = cpng_format_ga()
        case 3: format = cpng_format_rgb()
        case 4: format = cpng_format_rgba()
        default: throw ImageError.encodeFailed(reason: "unsupported channel count \(image.channels)")
        }
        guard image.width > 0, image.height > 0,
              image.width <= Int(Int32.max) / 4, image.height <= Int(Int32.max) else {
            throw ImageError.encodeFailed(reason: "bad size \(image.width)x\(image.height)")
        }
        guard image.pixels.count == image.width * image.height * image.channels else {
            throw ImageError.encodeFailed(reason: "\(image.pixels.count) bytes for a \(image.width)x\(image.height)x\(image.channels) image")
        }
        var png = png_image()
        png.version = cpng_image_version()
        png.width = png_uint_32(image.width)
        png.height = png_uint_32(image.height)
        png.format = format
        let bound = Int(cpng_png_size_max(&png))
        var failure: String?
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buf, count in
            var written = png_alloc_size_t(bound)
            let ok = image.pixels.withUnsafeBytes { px in
                png_image_write_to_memory(&png, buf.baseAddress, &written, 0, px.baseAddress, 0, nil)
            }
            if ok == 0 || Int(written) > bound {
                failure = messageOf(&png)
                count = 0
            } else {
                count = Int(written)
            }
        }
        png_image_free(&png)
        if let failure { throw ImageError.encodeFailed(reason: failure) }
        return out
    }

    // MARK: - Helpers

    /// Throws the right error when the bytes do not start with the PNG signature.
    static func checkSignature(_ bytes: UnsafeRawBufferPointer, source: String) throws {
        let n = min(bytes.count, 8)
        var matches = true
        for i in 0..<n where bytes[i] != signature[i] { matches = false; break }
        if matches {
            if bytes.count < 8 { throw ImageError.truncated(source: source, format: "PNG", reason: "signature cut after \(bytes.count) bytes") }
            return
        }
        if let format = sniffOtherFormat(bytes) {
            throw ImageError.unsupportedFormat(source: source, format: format)
        }
        throw ImageError.notPNG(source: source)
    }

    /// Names a few common non-PNG image formats from their magic bytes.
    static func sniffOtherFormat(_ b: UnsafeRawBufferPointer) -> String? {
        func starts(_ magic: [UInt8], at offset: Int = 0) -> Bool {
            guard b.count >= offset + magic.count else { return false }
            for (i, m) in magic.enumerated() where b[offset + i] != m { return false }
            return true
        }
        if starts([0xFF, 0xD8, 0xFF]) { return "JPEG" }
        if starts(Array("GIF8".utf8)) { return "GIF" }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return "WebP" }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
        if starts(Array("BM".utf8)) && b.count >= 26 { return "BMP" }
        return nil
    }

    /// The error for a failed read: libpng's memory reader says "read beyond end of data" when
    /// the bytes stop early (and "Not enough image data" when the IDAT stream does).
    static func failure(source: String, message: String) -> ImageError {
        if message.contains("beyond end of data") || message.contains("Not enough image data") {
            return .truncated(source: source, format: "PNG", reason: message)
        }
        return .corrupt(source: source, format: "PNG", reason: message)
    }

    static func messageOf(_ image: inout png_image) -> String {
        let text = withUnsafeBytes(of: &image.message) { raw -> String in
            let bytes = raw.bindMemory(to: UInt8.self)
            let len = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes[..<len], as: UTF8.self)
        }
        return text.isEmpty ? "libpng error" : text
    }

    /// Converts interleaved 8-bit pixels between channel layouts (see the type's notes).
    static func convert(_ src: [UInt8], pixelCount n: Int, from: Int, to: Int) -> [UInt8] {
        if from == to { return src }
        return [UInt8](unsafeUninitializedCapacity: n * to) { dst, count in
            src.withUnsafeBufferPointer { s in
                let s = s.baseAddress!, d = dst.baseAddress!
                switch (from, to) {
                case (2, 1):
                    for i in 0..<n { d[i] = s[2 * i] }
                case (1, 3), (2, 3):
                    for i in 0..<n { let g = s[from * i]; d[3 * i] = g; d[3 * i + 1] = g; d[3 * i + 2] = g }
                case (3, 1), (4, 1):
                    for i in 0..<n {
                        let p = s + from * i
                        let l = UInt32(p[0]) &* 19595 &+ UInt32(p[1]) &* 38470 &+ UInt32(p[2]) &* 7471 &+ 0x8000
                        d[i] = UInt8(truncatingIfNeeded: l >> 16)
                    }
                case (4, 3):
                    for i in 0..<n { d[3 * i] = s[4 * i]; d[3 * i + 1] = s[4 * i + 1]; d[3 * i + 2] = s[4 * i + 2] }
                default:
                    preconditionFailure("PNGCodec.convert: \(from) → \(to) channels")
                }
            }
            count = n * to
        }
    }
}
