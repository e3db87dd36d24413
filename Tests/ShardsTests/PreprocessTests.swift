import Shards
import Testing

@Suite struct PreprocessTests {
    func run(_ image: Image, size: Int, mean: [Float] = [0], std: [Float] = [1]) -> [Float] {
        var out = [Float](repeating: .nan, count: image.channels * size * size)
        out.withUnsafeMutableBufferPointer {
            Preprocess.resizeNormalize(image, size: size, mean: mean, std: std, into: $0.baseAddress!)
        }
        return out
    }

    func close(_ a: [Float], _ b: [Float], tol: Float = 1e-5) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol }
    }

    @Test func identitySize() {
        let px: [UInt8] = [0, 51, 102, 153, 204, 255, 1, 2, 3]
        let img = Image(width: 3, height: 3, channels: 1, pixels: px)
        #expect(close(run(img, size: 3), px.map { Float($0) / 255 }))
        // Normalisation: (x/255 - mean) / std.
        let n = run(img, size: 3, mean: [0.5], std: [0.25])
        #expect(close(n, px.map { (Float($0) / 255 - 0.5) / 0.25 }))
    }

    @Test func rgbIsPlanarCHWWithPerChannelStats() {
        // 2×2 RGB; pixel (x, y) = (10x + y, 100 + x, 200 + y).
        var px: [UInt8] = []
        for y in 0..<2 { for x in 0..<2 { px += [UInt8(10 * x + y), UInt8(100 + x), UInt8(200 + y)] } }
        let img = Image(width: 2, height: 2, channels: 3, pixels: px)
        let mean: [Float] = [0.1, 0.2, 0.3], std: [Float] = [0.5, 1, 2]
        let out = run(img, size: 2, mean: mean, std: std)
        for c in 0..<3 { for y in 0..<2 { for x in 0..<2 {
            let v = Float(px[(y * 2 + x) * 3 + c]) / 255
            #expect(abs(out[c * 4 + y * 2 + x] - (v - mean[c]) / std[c]) < 1e-5)
        } } }
    }

    @Test func downscaleByTwo() {
        // Columns 0, 70, 140, 210 on every row. PIL's antialiased bilinear 4 → 2 uses source
        // pixels {0,1,2} with weights 3/7, 3/7, 1/7 and {1,2,3} with 1/7, 3/7, 3/7 (the triangle
        // stretched ×2, renormalised at the border): 50 and 160.
        let cols: [UInt8] = [0, 70, 140, 210]
        let img = Image(width: 4, height: 4, channels: 1, pixels: (0..<4).flatMap { _ in cols })
        #expect(close(run(img, size: 2), [50, 160, 50, 160].map { $0 / 255 }))

        // Interior weights are 1/8, 3/8, 3/8, 1/8 (8 → 4, output column 1 uses columns 1...4).
        let ramp: [UInt8] = [0, 8, 16, 24, 32, 40, 48, 56].map { $0 * 4 }
        let wide = Image(width: 8, height: 8, channels: 1, pixels: (0..<8).flatMap { _ in ramp })
        let out = run(wide, size: 4)
        let expected = (Float(ramp[1]) + 3 * Float(ramp[2]) + 3 * Float(ramp[3]) + Float(ramp[4])) / 8
        #expect(abs(out[1] * 255 - expected) < 1e-3)
    }

    @Test func downscaleConstantAndRange() {
        let img = Image(width: 28, height: 28, channels: 1, fill: 77)
        #expect(run(img, size: 9).allSatisfy { abs($0 - 77 / 255) < 1e-6 })
        let rnd = Image(width: 13, height: 7, channels: 3, pixels: TestFiles.bytes(13 * 7 * 3, seed: 11))
        let out = run(rnd, size: 5)
        #expect(out.allSatisfy { $0 >= 0 && $0 <= 1 && $0.isFinite })
    }

    @Test func upscaleByTwo() {
        // 2×2 → 4×4: per axis [p0, .75 p0 + .25 p1, .25 p0 + .75 p1, p1] (align_corners=false,
        // edges clamped), as torch's bilinear and PIL's upscaling give.
        let img = Image(width: 2, height: 2, channels: 1, pixels: [0, 100, 200, 40])
        let out = run(img, size: 4).map { $0 * 255 }
        let w: [[Float]] = [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]]
        let src: [[Float]] = [[0, 100], [200, 40]]
        for y in 0..<4 { for x in 0..<4 {
            var e: Float = 0
            for i in 0..<2 { for j in 0..<2 { e += w[y][i] * w[x][j] * src[i][j] } }
            #expect(abs(out[y * 4 + x] - e) < 1e-3, "(\(x), \(y))")
        } }
        // A few values worked out by hand.
        #expect(abs(out[0] - 0) < 1e-3)
        #expect(abs(out[1] - 25) < 1e-3)            // .75·0 + .25·100
        #expect(abs(out[5] - 58.75) < 1e-3)         // .5625·0 + .1875·100 + .1875·200 + .0625·40
        #expect(abs(out[15] - 40) < 1e-3)
    }

    @Test func upscaleRectangular() {
        // 1×2 (one column, two rows) → 4×4: constant along x, interpolated along y.
        let img = Image(width: 1, height: 2, channels: 1, pixels: [0, 200])
        let out = run(img, size: 4).map { $0 * 255 }
        let rows: [Float] = [0, 50, 150, 200]
        for y in 0..<4 { for x in 0..<4 { #expect(abs(out[y * 4 + x] - rows[y]) < 1e-3) } }
    }
}

@Suite struct ResizeTests {
    @Test func resizeMatchesResizeNormalizeWithinHalfAStep() {
        for (w, h, c, size) in [(500, 375, 3, 224), (28, 28, 1, 32), (7, 5, 3, 4), (224, 224, 3, 224)] {
            let img = Image(width: w, height: h, channels: c, pixels: TestFiles.bytes(w * h * c, seed: UInt64(w)))
            let small = Preprocess.resize(img, size: size)
            #expect(small.width == size && small.height == size && small.channels == c)
            var direct = [Float](repeating: 0, count: c * size * size)
            var viaBytes = direct
            direct.withUnsafeMutableBufferPointer { Preprocess.resizeNormalize(img, size: size, mean: [0], std: [1], into: $0.baseAddress!) }
            viaBytes.withUnsafeMutableBufferPointer { Preprocess.resizeNormalize(small, size: size, mean: [0], std: [1], into: $0.baseAddress!) }
            let worst = zip(direct, viaBytes).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 0.5 / 255 + 1e-6, "\(w)x\(h)→\(size): \(worst * 255)/255")
        }
    }
}
