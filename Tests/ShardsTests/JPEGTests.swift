import Foundation
import Shards
import Testing
import TestSupport

@Suite struct JPEGTests {
    /// A smooth test picture (JPEG-friendly) with a little texture.
    static func picture(width: Int = 64, height: Int = 48, channels: Int = 3) -> Image {
        var img = Image(width: width, height: height, channels: channels)
        for y in 0..<height {
            for x in 0..<width {
                let base = [x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) * 2 % 256]
                for c in 0..<channels { img[x, y, c] = UInt8(clamping: base[c] + ((x / 8 + y / 8) % 2) * 10) }
            }
        }
        return img
    }

    static func maxAbsDiff(_ a: Image, _ b: Image) -> Int {
        zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
    }

    static func meanAbsDiff(_ a: Image, _ b: Image) -> Double {
        Double(zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +)) / Double(a.pixels.count)
    }

    /// The index of the first `FF marker` pair.
    static func marker(_ b: [UInt8], _ m: UInt8) -> Int? {
        (0..<(b.count - 1)).first { b[$0] == 0xFF && b[$0 + 1] == m }
    }

    func expectError(_ bytes: [UInt8], source: String, channels: Int = 3, maxPixels: Int = PNGCodec.defaultMaxPixels,
                     _ check: (ImageError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let img = try ImageDecoder.decode(bytes, channels: channels, maxPixels: maxPixels, source: source)
            Issue.record("\(source): decoded \(img.width)x\(img.height), expected an error", sourceLocation: sourceLocation)
        } catch let e as ImageError {
            #expect(check(e), "unexpected error: \(e)", sourceLocation: sourceLocation)
            #expect(e.source == source && e.description.contains(source), "\(e)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
        }
    }

    // MARK: Good files

    @Test func goodRGBAndGray() throws {
        let img = Self.picture()
        let jpg = try JPEGCodec.encode(img, quality: 95)
        #expect(jpg.withUnsafeBytes { ImageDecoder.format(of: $0) } == .jpeg)
        let rgb = try ImageDecoder.decode(jpg, channels: 3, source: "a.jpg")
        #expect(rgb.width == 64 && rgb.height == 48 && rgb.channels == 3)
        #expect(Self.meanAbsDiff(rgb, img) < 3, "lossy, but close: \(Self.meanAbsDiff(rgb, img))")

        // Colour → gray is the luma plane: close to the 601 luma of the decoded RGB.
        let gray = try ImageDecoder.decode(jpg, channels: 1, source: "a.jpg")
        #expect(gray.channels == 1 && gray.pixels.count == 64 * 48)
        for i in stride(from: 0, to: 64 * 48, by: 37) {
            let l = 0.299 * Double(rgb.pixels[3 * i]) + 0.587 * Double(rgb.pixels[3 * i + 1]) + 0.114 * Double(rgb.pixels[3 * i + 2])
            #expect(abs(Double(gray.pixels[i]) - l) <= 2.5, "pixel \(i): \(gray.pixels[i]) vs \(l)")
        }

        // A grayscale JPEG → RGB replicates the sample.
        let g = Self.picture(channels: 1)
        let gj = try JPEGCodec.encode(g, quality: 95)
        let g1 = try ImageDecoder.decode(gj, channels: 1, source: "g.jpg")
        #expect(Self.meanAbsDiff(g1, g) < 2)
        let g3 = try ImageDecoder.decode(gj, channels: 3, source: "g.jpg")
        #expect(g3.pixels == g1.pixels.flatMap { [$0, $0, $0] })
    }

    @Test func imageFileLoadsJPEG() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let jpg = try JPEGCodec.encode(Self.picture(), quality: 90)
        let url = dir.appendingPathComponent("photo.png")   // the name lies: content decides
        try TestFiles.write(jpg, to: url)
        let img = try ImageFile.load(path: url.path, channels: 3)
        #expect(img == (try JPEGCodec.decode(jpg, channels: 3, source: "x")))
    }

    // MARK: Bad files: each has its own reason

    @Test func truncated() throws {
        let jpg = try JPEGCodec.encode(Self.picture(), quality: 90)
        let sos = try #require(Self.marker(jpg, 0xDA))
        // Cut in the header, before the frame header, between the tables and the scan, in the
        // scan, and just before EOI (libjpeg-turbo alone would accept most of these).
        for cut in [2, 3, 20, sos - 10, sos + 40, jpg.count / 2 + sos / 2, jpg.count - 2] {
            expectError(Array(jpg.prefix(cut)), source: "cut\(cut).jpg") {
                if case let .truncated(_, f, _) = $0 { return f == "JPEG" } else { return false }
            }
        }
    }

    @Test func corrupt() throws {
        let jpg = try JPEGCodec.encode(Self.picture(), quality: 90)
        // The scan stops in the middle but EOI follows: libjpeg warns "premature end of data segment".
        let sos = try #require(Self.marker(jpg, 0xDA))
        let cutScan = Array(jpg.prefix((sos + jpg.count) / 2)) + [0xFF, 0xD9]
        expectError(cutScan, source: "short-scan.jpg") {
            if case let .corrupt(_, f, r) = $0 { return f == "JPEG" && r.contains("Corrupt JPEG data") } else { return false }
        }
        // A bogus Huffman table (its 16 code-length counts sum to more than 256).
        var badTable = jpg
        let dht = try #require(Self.marker(jpg, 0xC4))
        for k in 0..<16 { badTable[dht + 5 + k] = 0xFF }
        expectError(badTable, source: "dht.jpg") {
            if case let .corrupt(_, f, _) = $0 { return f == "JPEG" } else { return false }
        }
        // Junk between the scan and EOI.
        let junk = Array(jpg.prefix(jpg.count - 2)) + [UInt8](repeating: 0x55, count: 16) + [0xFF, 0xD9]
        expectError(junk, source: "junk.jpg") { if case .corrupt = $0 { return true } else { return false } }
    }

    @Test func decompressionBomb() throws {
        // A valid small JPEG whose frame header (SOF0) claims 50000×50000 pixels.
        var bomb = try JPEGCodec.encode(Self.picture(), quality: 90)
        let sof = try #require(Self.marker(bomb, 0xC0))
        for k in [5, 7] { bomb[sof + k] = 0xC3; bomb[sof + k + 1] = 0x50 }   // height, width: 50000
        #expect(bomb.count < 2000)
        expectError(bomb, source: "bomb.jpg") {
            if case let .tooLarge(_, w, h, limit) = $0 { return w == 50_000 && h == 50_000 && limit == PNGCodec.defaultMaxPixels }
            return false
        }
        let ok = try JPEGCodec.encode(Self.picture(), quality: 90)
        expectError(ok, source: "small.jpg", maxPixels: 64 * 48 - 1) {
            if case let .tooLarge(_, w, h, _) = $0 { return w == 64 && h == 48 } else { return false }
        }
        #expect((try? ImageDecoder.decode(ok, channels: 3, maxPixels: 64 * 48, source: "ok")) != nil)
    }

    @Test func emptyAndWrongType() {
        expectError([], source: "zero.jpg") { if case .empty = $0 { return true } else { return false } }
        expectError(Array("<!DOCTYPE html><html>404</html>".utf8), source: "page.jpg") {
            if case let .unsupportedFormat(_, f) = $0 { return f.hasPrefix("text") && f.contains("<!DOCTYPE") } else { return false }
        }
        expectError(Array("GIF89a".utf8) + [1, 0, 1, 0, 0, 0, 0], source: "a.gif") {
            if case let .unsupportedFormat(_, f) = $0 { return f == "GIF" } else { return false }
        }
        expectError([0x00, 0x01, 0x02, 0x9F, 0xFE], source: "bin") {
            if case let .unsupportedFormat(_, f) = $0 { return f.hasPrefix("unknown") } else { return false }
        }
    }

    @Test func garbageNeverCrashes() throws {
        // Random corruptions: decode (JPEG has no checksums; damaged entropy data can decode to
        // wrong pixels without any warning) or throw ImageError — never crash.
        let jpg = try JPEGCodec.encode(Self.picture(), quality: 90)
        for seed in 0..<200 {
            var b = jpg
            let noise = TestFiles.bytes(4, seed: UInt64(seed) + 100)
            let pos = 3 + (Int(noise[0]) << 8 | Int(noise[2])) % (jpg.count - 3)
            b[pos] ^= noise[1] | 1
            do { _ = try ImageDecoder.decode(b, channels: 3, maxPixels: 1 << 20, source: "fuzz") } catch is ImageError {} catch {
                Issue.record("unexpected error \(error)")
            }
        }
    }
}
