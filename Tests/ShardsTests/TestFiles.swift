import Foundation
import TestSupport

/// Hand-made encoders for test inputs, independent of libpng and zlib: CRC-32, Adler-32,
/// zlib/gzip streams made of *stored* deflate blocks, and a PNG writer for every colour type,
/// bit depth and Adam7 interlacing.
enum TestFiles {
    // MARK: Checksums

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32<S: Sequence>(_ bytes: S, start: UInt32 = 0) -> UInt32 where S.Element == UInt8 {
        var c = ~start
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for x in bytes { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
        return b << 16 | a
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    static func le32(_ v: UInt32) -> [UInt8] { be32(v).reversed() }

    // MARK: Deflate (stored blocks only)

    static func deflateStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        repeat {
            let n = min(65535, data.count - i)
            let final: UInt8 = i + n >= data.count ? 1 : 0
            out.append(final)  // BFINAL, BTYPE=00, rest of the byte padding
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[i..<(i + n)]
            i += n
        } while i < data.count
        return out
    }

    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        [0x78, 0x01] + deflateStored(data) + be32(adler32(data))
    }

    static func gzipStored(_ data: [UInt8]) -> [UInt8] {
        [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255] + deflateStored(data) + le32(crc32(data)) + le32(UInt32(truncatingIfNeeded: data.count))
    }

    // MARK: PNG

    static func chunk(_ type: String, _ payload: [UInt8]) -> [UInt8] {
        let t = Array(type.utf8)
        return be32(UInt32(payload.count)) + t + payload + be32(crc32(t + payload))
    }

    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// A PNG with `samples` (row-major, `channels` per pixel; palette indices for colour type 3)
    /// at `bitDepth`, colour type 0 / 2 / 3 / 4 / 6, optionally Adam7 interlaced.
    static func png(width: Int, height: Int, colorType: UInt8, bitDepth: Int, samples: [Int],
                    interlaced: Bool = false, palette: [(UInt8, UInt8, UInt8)] = [], trns: [UInt8]? = nil,
                    extraChunks: [[UInt8]] = []) -> [UInt8] {
        let channels: Int
        switch colorType { case 0, 3: channels = 1; case 4: channels = 2; case 2: channels = 3; default: channels = 4 }
        precondition(samples.count == width * height * channels)
        func packRow(_ rowSamples: [Int]) -> [UInt8] {
            var out: [UInt8] = [0]  // filter: None
            if bitDepth == 16 {
                for s in rowSamples { out += [UInt8(s >> 8), UInt8(s & 0xFF)] }
            } else if bitDepth == 8 {
                out += rowSamples.map { UInt8($0) }
            } else {
                var acc = 0, bits = 0
                for s in rowSamples {
                    acc = acc << bitDepth | s; bits += bitDepth
                    if bits == 8 { out.append(UInt8(acc)); acc = 0; bits = 0 }
                }
                if bits > 0 { out.append(UInt8(acc << (8 - bits))) }
            }
            return out
        }
        var raw: [UInt8] = []
        let passes: [(Int, Int, Int, Int)] = interlaced
            ? [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
            : [(0, 0, 1, 1)]
        for (x0, y0, dx, dy) in passes {
            let xs = Array(stride(from: x0, to: width, by: dx)), ys = Array(stride(from: y0, to: height, by: dy))
            if xs.isEmpty || ys.isEmpty { continue }
            for y in ys {
                var row: [Int] = []
                for x in xs { row += samples[((y * width + x) * channels)..<((y * width + x + 1) * channels)] }
                raw += packRow(row)
            }
        }
        var ihdr = be32(UInt32(width)) + be32(UInt32(height))
        ihdr += [UInt8(bitDepth), colorType, 0, 0, interlaced ? 1 : 0]
        var file = signature + chunk("IHDR", ihdr)
        if !palette.isEmpty { file += chunk("PLTE", palette.flatMap { [$0.0, $0.1, $0.2] }) }
        if let trns { file += chunk("tRNS", trns) }
        for c in extraChunks { file += c }
        file += chunk("IDAT", zlibStored(raw)) + chunk("IEND", [])
        return file
    }

    // MARK: IDX

    static func idx(magic: UInt32, dims: [Int], data: [UInt8]) -> [UInt8] {
        be32(magic) + dims.flatMap { be32(UInt32($0)) } + data
    }

    // MARK: Files

    static func write(_ bytes: [UInt8], to url: URL) throws {
        try Data(bytes).write(to: url)
    }

    /// Deterministic pseudo-random bytes.
    static func bytes(_ n: Int, seed: UInt64) -> [UInt8] {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<n).map { _ in
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            return UInt8(truncatingIfNeeded: s >> 24)
        }
    }
}
