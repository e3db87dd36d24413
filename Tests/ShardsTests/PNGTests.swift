import Foundation
import Shards
import Testing
import TestSupport

@Suite struct PNGTests {
    // MARK: Round trips through libpng's writer

    @Test func roundTripGray() throws {
        let img = Image(width: 7, height: 5, channels: 1, pixels: TestFiles.bytes(35, seed: 1))
        let png = try PNGCodec.encode(img)
        #expect(Array(png.prefix(8)) == TestFiles.signature)
        #expect(try PNGCodec.decode(png, channels: 1, source: "mem") == img)
    }

    @Test func roundTripRGB() throws {
        let img = Image(width: 6, height: 9, channels: 3, pixels: TestFiles.bytes(6 * 9 * 3, seed: 2))
        let png = try PNGCodec.encode(img)
        #expect(try PNGCodec.decode(png, channels: 3, source: "mem") == img)
        #expect(try PNGCodec.decode(Data(png), channels: 3, source: "mem") == img)
    }

    @Test func encodeRejectsBadImages() {
        #expect(throws: ImageError.self) { try PNGCodec.encode(Image(width: 2, height: 2, channels: 1, pixels: [1, 2, 3])) }
        #expect(throws: ImageError.self) { try PNGCodec.encode(Image(width: 0, height: 2, channels: 1, pixels: [])) }
        #expect(throws: ImageError.self) { try PNGCodec.encode(Image(width: 1, height: 1, channels: 5, pixels: [1, 2, 3, 4, 5])) }
    }

    // MARK: Decoding every layout (hand-made files)

    @Test func grayToGrayAndRGB() throws {
        let s = TestFiles.bytes(5 * 3, seed: 3).map(Int.init)
        let png = TestFiles.png(width: 5, height: 3, colorType: 0, bitDepth: 8, samples: s)
        let g = try PNGCodec.decode(png, channels: 1, source: "g.png")
        #expect(g.width == 5 && g.height == 3 && g.channels == 1)
        #expect(g.pixels == s.map(UInt8.init))
        let rgb = try PNGCodec.decode(png, channels: 3, source: "g.png")
        #expect(rgb.pixels == s.flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
    }

    @Test func grayAlphaDropsAlpha() throws {
        let gray = [0, 50, 100, 150, 200, 255], alpha = [255, 0, 128, 7, 255, 1]
        let samples = zip(gray, alpha).flatMap { [$0, $1] }
        let png = TestFiles.png(width: 3, height: 2, colorType: 4, bitDepth: 8, samples: samples)
        #expect(try PNGCodec.decode(png, channels: 1, source: "ga.png").pixels == gray.map(UInt8.init))
        #expect(try PNGCodec.decode(png, channels: 3, source: "ga.png").pixels == gray.flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
    }

    @Test func rgbToRGBAndGray() throws {
        let s = TestFiles.bytes(4 * 4 * 3, seed: 4).map(Int.init)
        let png = TestFiles.png(width: 4, height: 4, colorType: 2, bitDepth: 8, samples: s)
        #expect(try PNGCodec.decode(png, channels: 3, source: "rgb.png").pixels == s.map(UInt8.init))
        let g = try PNGCodec.decode(png, channels: 1, source: "rgb.png")
        for i in 0..<16 {
            // ITU-R 601-2 luma, as PIL's convert("L").
            let l = 0.299 * Double(s[3 * i]) + 0.587 * Double(s[3 * i + 1]) + 0.114 * Double(s[3 * i + 2])
            #expect(abs(Double(g.pixels[i]) - l) <= 0.51, "pixel \(i): \(g.pixels[i]) vs \(l)")
        }
    }

    @Test func rgbaDropsAlpha() throws {
        let rgb = TestFiles.bytes(3 * 2 * 3, seed: 5).map(Int.init)
        let alpha = [0, 255, 10, 128, 200, 1]
        var samples: [Int] = []
        for i in 0..<6 { samples += rgb[(3 * i)..<(3 * i + 3)] + [alpha[i]] }
        let png = TestFiles.png(width: 3, height: 2, colorType: 6, bitDepth: 8, samples: samples)
        #expect(try PNGCodec.decode(png, channels: 3, source: "rgba.png").pixels == rgb.map(UInt8.init))
    }

    @Test func palette8And4Bit() throws {
        let palette: [(UInt8, UInt8, UInt8)] = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (200, 100, 50)]
        let idx = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0, 2]
        let expected = idx.flatMap { [palette[$0].0, palette[$0].1, palette[$0].2] }
        for depth in [8, 4, 2] where depth == 8 || (1 << depth) >= palette.count {
            let png = TestFiles.png(width: 4, height: 3, colorType: 3, bitDepth: depth, samples: idx, palette: palette)
            #expect(try PNGCodec.decode(png, channels: 3, source: "p\(depth).png").pixels == expected, "depth \(depth)")
        }
        // With tRNS (palette alpha): alpha dropped, colours kept.
        let png = TestFiles.png(width: 4, height: 3, colorType: 3, bitDepth: 8, samples: idx, palette: palette,
                                trns: [0, 128, 255])
        #expect(try PNGCodec.decode(png, channels: 3, source: "pt.png").pixels == expected)
    }

    @Test func sixteenBit() throws {
        let values = [0, 257, 65535, 32896, 128, 1000, 65000, 12850]
        let png = TestFiles.png(width: 4, height: 2, colorType: 0, bitDepth: 16, samples: values)
        let g = try PNGCodec.decode(png, channels: 1, source: "g16.png")
        for (v, out) in zip(values, g.pixels) {
            let expected = Double(v) * 255 / 65535
            #expect(abs(Double(out) - expected) <= 0.51, "\(v) → \(out), expected ≈ \(expected)")
        }
        // Exact multiples of 257 map exactly.
        #expect(g.pixels[0] == 0 && g.pixels[1] == 1 && g.pixels[2] == 255 && g.pixels[3] == 128)

        let rgb = [0, 257, 514, 65535, 25700, 51400]
        let png2 = TestFiles.png(width: 2, height: 1, colorType: 2, bitDepth: 16, samples: rgb)
        #expect(try PNGCodec.decode(png2, channels: 3, source: "rgb16.png").pixels == [0, 1, 2, 255, 100, 200])
    }

    @Test func lowBitDepthGray() throws {
        let bits = [0, 1, 1, 0, 1, 0, 0, 1, 1, 1]
        let png = TestFiles.png(width: 5, height: 2, colorType: 0, bitDepth: 1, samples: bits)
        #expect(try PNGCodec.decode(png, channels: 1, source: "g1.png").pixels == bits.map { $0 == 1 ? 255 : 0 })
        let twoBit = [0, 1, 2, 3]
        let png2 = TestFiles.png(width: 2, height: 2, colorType: 0, bitDepth: 2, samples: twoBit)
        #expect(try PNGCodec.decode(png2, channels: 1, source: "g2.png").pixels == [0, 85, 170, 255])
    }

    @Test func interlaced() throws {
        // 11×9 touches every Adam7 pass with partial blocks.
        let g = TestFiles.bytes(11 * 9, seed: 6).map(Int.init)
        let png = TestFiles.png(width: 11, height: 9, colorType: 0, bitDepth: 8, samples: g, interlaced: true)
        #expect(try PNGCodec.decode(png, channels: 1, source: "i.png").pixels == g.map(UInt8.init))

        let rgb = TestFiles.bytes(3 * 3 * 3, seed: 7).map(Int.init)
        let png2 = TestFiles.png(width: 3, height: 3, colorType: 2, bitDepth: 8, samples: rgb, interlaced: true)
        #expect(try PNGCodec.decode(png2, channels: 3, source: "i3.png").pixels == rgb.map(UInt8.init))

        let one = TestFiles.png(width: 1, height: 1, colorType: 0, bitDepth: 8, samples: [42], interlaced: true)
        #expect(try PNGCodec.decode(one, channels: 1, source: "i1.png").pixels == [42])
    }

    // MARK: Bad input

    func expectError(_ bytes: [UInt8], source: String = "bad.png", maxPixels: Int = PNGCodec.defaultMaxPixels,
                     _ check: (ImageError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let img = try PNGCodec.decode(bytes, channels: 1, maxPixels: maxPixels, source: source)
            Issue.record("\(source): decoded \(img.width)x\(img.height), expected an error", sourceLocation: sourceLocation)
        } catch let e as ImageError {
            #expect(check(e), "unexpected error: \(e)", sourceLocation: sourceLocation)
            #expect(e.source == source, sourceLocation: sourceLocation)
            #expect(e.description.contains(source), "\(e)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
        }
    }

    var goodPNG: [UInt8] {
        TestFiles.png(width: 8, height: 8, colorType: 0, bitDepth: 8, samples: TestFiles.bytes(64, seed: 8).map(Int.init))
    }

    @Test func emptyAndNotPNG() {
        expectError([], source: "zero.png") { if case .empty = $0 { return true } else { return false } }
        expectError(Array("hello, this is not a png".utf8), source: "text.png") {
            if case .notPNG = $0 { return true } else { return false }
        }
        expectError([0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10] + Array("JFIF".utf8), source: "photo.png") {
            if case let .unsupportedFormat(_, f) = $0 { return f == "JPEG" } else { return false }
        }
        expectError(Array(TestFiles.signature.prefix(5)), source: "short.png") {
            if case .truncated = $0 { return true } else { return false }
        }
        expectError(TestFiles.signature, source: "sig.png") { if case .truncated = $0 { return true } else { return false } }
    }

    @Test func badCRC() {
        var header = goodPNG
        header[8 + 8 + 13] ^= 0xFF  // first byte of IHDR's CRC
        expectError(header, source: "ihdr-crc.png") { if case .corrupt = $0 { return true } else { return false } }

        var data = goodPNG
        data[data.count - 12 - 1] ^= 0x55  // last byte of IDAT's CRC (before IEND's 12 bytes)
        expectError(data, source: "idat-crc.png") { if case .corrupt = $0 { return true } else { return false } }

        var payload = goodPNG
        payload[8 + 25 + 8 + 10] ^= 0x01  // a pixel byte inside IDAT: CRC no longer matches
        expectError(payload, source: "idat-data.png") { if case .corrupt = $0 { return true } else { return false } }
    }

    @Test func truncated() {
        let png = goodPNG
        for cut in [12, 33, 40, png.count / 2, png.count - 16, png.count - 13] {
            expectError(Array(png.prefix(cut)), source: "cut\(cut).png") {
                if case let .truncated(_, f, _) = $0 { return f == "PNG" } else { return false }
            }
        }
        // libpng stops after the image data (whose CRCs it has checked): a missing or cut IEND
        // chunk is accepted, as by most decoders.
        #expect((try? PNGCodec.decode(Array(png.prefix(png.count - 12)), channels: 1, source: "no-iend")) != nil)
    }

    @Test func decompressionBomb() {
        // IHDR claims 50000×50000 gray; IDAT holds only a few bytes.
        let ihdr = TestFiles.be32(50_000) + TestFiles.be32(50_000) + [8, 0, 0, 0, 0]
        let bomb = TestFiles.signature + TestFiles.chunk("IHDR", ihdr)
            + TestFiles.chunk("IDAT", TestFiles.zlibStored([0, 0, 0, 0])) + TestFiles.chunk("IEND", [])
        expectError(bomb, source: "bomb.png") {
            if case let .tooLarge(_, w, h, limit) = $0 { return w == 50_000 && h == 50_000 && limit == PNGCodec.defaultMaxPixels }
            return false
        }
        // The limit is the caller's.
        expectError(goodPNG, source: "small.png", maxPixels: 63) {
            if case let .tooLarge(_, w, h, limit) = $0 { return w == 8 && h == 8 && limit == 63 }
            return false
        }
        #expect((try? PNGCodec.decode(goodPNG, channels: 1, maxPixels: 64, source: "ok")) != nil)
    }

    @Test func garbageNeverCrashes() {
        // Random corruptions of a valid file: either decodes or throws ImageError.
        let png = goodPNG
        for seed in 0..<200 {
            var b = png
            let noise = TestFiles.bytes(4, seed: UInt64(seed) + 100)
            let pos = 8 + Int(noise[0]) % (png.count - 8)
            b[pos] ^= noise[1] | 1
            do { _ = try PNGCodec.decode(b, channels: 3, source: "fuzz") } catch is ImageError {} catch {
                Issue.record("unexpected error \(error)")
            }
        }
    }

    // MARK: Files

    @Test func imageFileLoad() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let img = Image(width: 3, height: 2, channels: 3, pixels: TestFiles.bytes(18, seed: 9))
        let path = dir.appendingPathComponent("a.png").path
        try TestFiles.write(try PNGCodec.encode(img), to: URL(fileURLWithPath: path))
        #expect(try ImageFile.load(path: path, channels: 3) == img)

        let missing = dir.appendingPathComponent("missing.png").path
        do {
            _ = try ImageFile.load(path: missing, channels: 1)
            Issue.record("expected an error")
        } catch let e as ImageError {
            #expect(e == .io(source: missing, errno: ENOENT))
            #expect(e.description.contains(missing) && e.description.contains("No such file"))
        }
        #expect(throws: ImageError.io(source: dir.path, errno: EISDIR)) { try ImageFile.load(path: dir.path, channels: 1) }

        let empty = dir.appendingPathComponent("empty.png").path
        #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
        #expect(throws: ImageError.empty(source: empty)) { try ImageFile.load(path: empty, channels: 1) }
    }
}
