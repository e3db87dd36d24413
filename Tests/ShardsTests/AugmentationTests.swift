import Foundation
@testable import Shards
import Support
import Testing

/// Each transform against hand-computed pixels on tiny images, and the determinism of the
/// per-(seed, epoch, sample) draws.
@Suite struct AugmentationTests {
    /// 1-channel image from rows of values.
    func gray(_ rows: [[UInt8]]) -> Image {
        Image(width: rows[0].count, height: rows.count, channels: 1, pixels: rows.flatMap { $0 })
    }

    func warp(_ image: Image, _ map: Affine2D, size: Int? = nil) -> [Float] {
        let n = size ?? image.width
        var out = [Float](repeating: .nan, count: image.channels * n * n)
        out.withUnsafeMutableBufferPointer { ImageOps.warp(image, map: map, outSize: n, into: $0.baseAddress!) }
        return out
    }

    func close(_ a: [Float], _ b: [Float], tol: Float = 1e-5) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol }
    }

    func scaled(_ v: [Float]) -> [Float] { v.map { $0 / 255 } }

    let g3 = [[UInt8(1), 2, 3], [4, 5, 6], [7, 8, 9]]

    @Test func identityCopiesExactly() {
        let img = gray(g3)
        #expect(warp(img, .identity) == scaled([1, 2, 3, 4, 5, 6, 7, 8, 9]))
    }

    @Test func flipsOf3x3() {
        let img = gray(g3)
        #expect(close(warp(img, .hflip(size: 3)), scaled([3, 2, 1, 6, 5, 4, 9, 8, 7])))
        #expect(close(warp(img, .vflip(size: 3)), scaled([7, 8, 9, 4, 5, 6, 1, 2, 3])))
        // A flip is its own inverse.
        #expect(Affine2D.hflip(size: 5).after(.hflip(size: 5)) == .identity)
    }

    @Test func rotation90CounterClockwise() {
        // Counter-clockwise on screen: the top-right pixel moves to the top-left.
        let img = gray(g3)
        let m = Affine2D.about(size: 3, degrees: 90).inverse
        #expect(close(warp(img, m), scaled([3, 6, 9, 2, 5, 8, 1, 4, 7])))
        // 180° of an RGB image reverses the pixel order, channels kept together.
        var px: [UInt8] = []
        for i in 0..<4 { px += [UInt8(i), UInt8(10 + i), UInt8(20 + i)] }
        let rgb = Image(width: 2, height: 2, channels: 3, pixels: px)
        let r = warp(rgb, Affine2D.about(size: 2, degrees: 180).inverse)
        #expect(close(r, scaled([3, 2, 1, 0, 13, 12, 11, 10, 23, 22, 21, 20])))
    }

    @Test func cropIsBilinearOfTheBox() {
        // 4×4 with v(x, y) = 10y + x; the box x ∈ [1, 3), y ∈ [0, 2) resized to 4×4 samples at
        // x = 0.75 + 0.5·ox, y = −0.25 + 0.5·oy (clamped to 0 inside the half-pixel border);
        // bilinear of a linear image is the linear function itself.
        let img = gray((0..<4).map { y in (0..<4).map { x in UInt8(10 * y + x) } })
        let out = warp(img, .crop(x0: 1, y0: 0, width: 2, height: 2, size: 4))
        var expected: [Float] = []
        for oy in 0..<4 { for ox in 0..<4 { expected.append(10 * max(-0.25 + 0.5 * Float(oy), 0) + 0.75 + 0.5 * Float(ox)) } }
        #expect(close(out, scaled(expected)))
        // The box equal to the image is the identity map.
        #expect(Affine2D.crop(x0: 0, y0: 0, width: 4, height: 4, size: 4) == .identity)
        // Downscaling 4×4 to 2×2: centres at 0.5 and 2.5 → averages of 2×2 blocks.
        let half = warp(img, .crop(x0: 0, y0: 0, width: 4, height: 4, size: 2), size: 2)
        #expect(close(half, scaled([5.5, 7.5, 25.5, 27.5])))
    }

    @Test func pointsOutsideTheImageAreFilled() {
        let img = gray(g3)
        // Translating right by one pixel: column 0 comes from x = −1 (outside) → 0.
        let m = Affine2D.about(size: 3, translateX: 1).inverse
        #expect(close(warp(img, m), scaled([0, 1, 2, 0, 4, 5, 0, 7, 8])))
    }

    func apply(_ values: [Float], _ body: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
        var v = values
        v.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
        return v
    }

    @Test func colourOperations() {
        #expect(close(apply([0.2, 0.6]) { ImageOps.brightness($0, count: 2, factor: 2) }, [0.4, 1.0]))
        // Contrast blends with the mean (0.5) of the image.
        #expect(close(apply([0, 0.5, 0.5, 1]) { ImageOps.contrast($0, channels: 1, size: 2, factor: 0.5) }, [0.25, 0.5, 0.5, 0.75]))
        // Saturation 0 of pure red: its gray value 0.299 in every channel. Gray images are untouched.
        #expect(close(apply([1, 0, 0]) { ImageOps.saturation($0, channels: 3, size: 1, factor: 0) }, [0.299, 0.299, 0.299]))
        #expect(apply([0.3]) { ImageOps.saturation($0, channels: 1, size: 1, factor: 0) } == [0.3])
        // Hue: red shifted by half a turn is cyan, by a third is green; gray has no hue.
        #expect(close(apply([1, 0, 0]) { ImageOps.hue($0, channels: 3, size: 1, shift: 0.5) }, [0, 1, 1]))
        #expect(close(apply([1, 0, 0]) { ImageOps.hue($0, channels: 3, size: 1, shift: 1.0 / 3) }, [0, 1, 0]))
        #expect(close(apply([0.8, 0.4, 0.4]) { ImageOps.hue($0, channels: 3, size: 1, shift: -1.0 / 3) }, [0.4, 0.4, 0.8]))
        #expect(apply([0.5, 0.5, 0.5]) { ImageOps.hue($0, channels: 3, size: 1, shift: 0.25) } == [0.5, 0.5, 0.5])
    }

    @Test func randAugmentPixelOperations() {
        // Posterize to 1 bit: 204 → 128, 77 → 0.
        #expect(close(apply([0.8, 0.3]) { ImageOps.posterize($0, count: 2, bits: 1) }, [128.0 / 255, 0]))
        #expect(close(apply([0.7, 0.2]) { ImageOps.solarize($0, count: 2, threshold: 0.5) }, [0.3, 0.2]))
        #expect(close(apply([0.2, 0.4, 0.6, 0.6]) { ImageOps.autocontrast($0, channels: 1, size: 2) }, [0, 0.5, 1, 1]))
        // Equalize (PIL): 1024 pixels, half 50 and half 100 → step (1024 − 512) / 255 = 2;
        // 50 maps to 1/2 = 0, 100 to (1 + 512)/2 = 256 → 255.
        let halves = (0..<1024).map { Float($0 < 512 ? 50 : 100) / 255 }
        #expect(apply(halves) { ImageOps.equalize($0, channels: 1, size: 32) } == (0..<1024).map { $0 < 512 ? 0 : 1 })
        // Sharpness 0 is PIL's smoothing filter (1 1 1 / 1 5 1 / 1 1 1) / 13 inside, borders kept.
        var center = [Float](repeating: 0, count: 9); center[4] = 0.5
        var scratch = [Float](repeating: 0, count: 9)
        let smooth = scratch.withUnsafeMutableBufferPointer { s in apply(center) { ImageOps.sharpness($0, channels: 1, size: 3, factor: 0, scratch: s.baseAddress!) } }
        var expected = [Float](repeating: 0, count: 9); expected[4] = 2.5 / 13
        #expect(close(smooth, expected))
    }

    func augment(_ a: Augmenter, _ image: Image, sample: Int, epoch: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: a.sampleCount)
        var scratch = [Float](repeating: 0, count: a.size * a.size)
        out.withUnsafeMutableBufferPointer { o in scratch.withUnsafeMutableBufferPointer { s in
            a.apply(image, sample: sample, epoch: epoch, into: o.baseAddress!, scratch: s.baseAddress!)
        } }
        return out
    }

    func randomImage(size: Int, channels: Int, seed: UInt64) -> Image {
        var rng = RandomSource(seed: seed)
        return Image(width: size, height: size, channels: channels, pixels: (0..<(size * size * channels)).map { _ in UInt8(rng.nextInt(below: 256)) })
    }

    var everything: AugmentOptions {
        var o = AugmentOptions.preset("strong")!
        o.vflip = 0.5; o.rotate = 20; o.translate = 0.1; o.scale = [0.9, 1.1]; o.shear = 10
        o.brightness = 0.4; o.contrast = 0.4; o.saturation = 0.4; o.hue = 0.1
        return o
    }

    @Test func sameSeedEpochSampleGivesIdenticalPixels() {
        let a = Augmenter(options: everything, seed: 7, size: 16, channels: 3)
        let img = randomImage(size: 16, channels: 3, seed: 1)
        let first = augment(a, img, sample: 42, epoch: 3)
        // Other samples and epochs in between (other threads, batch positions) change nothing.
        _ = augment(a, img, sample: 41, epoch: 3); _ = augment(a, img, sample: 42, epoch: 2)
        let again = augment(Augmenter(options: everything, seed: 7, size: 16, channels: 3), img, sample: 42, epoch: 3)
        #expect(first == again)
        #expect(first.allSatisfy { $0 >= 0 && $0 <= 1 })
        // Another epoch, sample or seed: other pixels.
        #expect(augment(a, img, sample: 42, epoch: 4) != first)
        #expect(augment(a, img, sample: 43, epoch: 3) != first)
        #expect(augment(Augmenter(options: everything, seed: 8, size: 16, channels: 3), img, sample: 42, epoch: 3) != first)
    }

    @Test func concurrentCallsMatchSequentialOnes() {
        let a = Augmenter(options: everything, seed: 3, size: 12, channels: 3)
        let img = randomImage(size: 12, channels: 3, seed: 2)
        let sequential = (0..<32).map { augment(a, img, sample: $0, epoch: 1) }
        let results = UnsafeMutablePointer<[Float]>.allocate(capacity: 32)
        results.initialize(repeating: [], count: 32)
        defer { results.deinitialize(count: 32); results.deallocate() }
        nonisolated(unsafe) let r = results
        DispatchQueue.concurrentPerform(iterations: 32) { i in r[31 - i] = augment(a, img, sample: 31 - i, epoch: 1) }
        for i in 0..<32 { #expect(results[i] == sequential[i]) }
    }

    @Test func noTransformsIsTheNormalisedCopy() {
        // Only a flip that never fires (p = 0 is "off"): the augmenter reproduces the plain input.
        let a = Augmenter(options: AugmentOptions(), seed: 1, size: 3, channels: 1)
        #expect(augment(a, gray(g3), sample: 0, epoch: 0) == scaled([1, 2, 3, 4, 5, 6, 7, 8, 9]))
        // A full-image crop at ratio 1 on a square image is the identity too.
        var o = AugmentOptions(); o.cropScale = [1, 1]; o.cropRatio = [1, 1]
        #expect(augment(Augmenter(options: o, seed: 1, size: 3, channels: 1), gray(g3), sample: 5, epoch: 2) == scaled([1, 2, 3, 4, 5, 6, 7, 8, 9]))
        // hflip with p = 1 always flips.
        var f = AugmentOptions(); f.hflip = 1
        #expect(close(augment(Augmenter(options: f, seed: 1, size: 3, channels: 1), gray(g3), sample: 0, epoch: 0), scaled([3, 2, 1, 6, 5, 4, 9, 8, 7])))
    }

    @Test func randomResizedCropBoxesStayInsideWithTheirScale() {
        var rng = RandomSource(seed: 11)
        for _ in 0..<500 {
            let (x0, y0, w, h) = Augmenter.cropBox(&rng, width: 32, height: 32, scale: [0.25, 0.5], ratio: [0.75, 4.0 / 3])
            #expect(x0 >= 0 && y0 >= 0 && x0 + w <= 32 && y0 + h <= 32)
            let area = w * h / 1024
            #expect(area > 0.2 && area < 0.56, "area \(area)")
            #expect(w / h >= 0.6 && w / h <= 1.5)
        }
    }

    @Test func mixDrawsAreDeterministicAndLabelsSumToOne() {
        var o = AugmentOptions(); o.mixupAlpha = 0.4; o.cutmixAlpha = 1; o.mixProb = 0.8
        let m = SampleMixer(options: o, seed: 5, population: 100, size: 8)
        var mixed = 0, cut = 0
        for i in 0..<100 {
            let d = m.draw(sample: i, epoch: 2)
            #expect(d == m.draw(sample: i, epoch: 2))
            guard let d else { continue }
            mixed += 1
            #expect(d.partner != i && (0..<100).contains(d.partner))
            #expect(d.lambda >= 0 && d.lambda <= 1)
            if let b = d.box {
                cut += 1
                #expect(abs(d.lambda - (1 - Float((b.x1 - b.x0) * (b.y1 - b.y0)) / 64)) < 1e-6)
            }
        }
        #expect(mixed > 60 && mixed < 95, "mixed \(mixed) of 100 at p 0.8")
        #expect(cut > 15 && cut < mixed - 15, "cutmix \(cut) of \(mixed)")
        #expect((0..<100).contains { m.draw(sample: $0, epoch: 2) != m.draw(sample: $0, epoch: 3) })
        // Soft targets: λ on the own label, 1 − λ on the partner's; rows sum to 1.
        let allLabels = (0..<100).map { Int32($0 % 4) }
        let indices = Array(0..<20)
        let labels = indices.map { allLabels[$0] }
        var t = [Float](repeating: .nan, count: 20 * 4)
        labels.withUnsafeBufferPointer { l in t.withUnsafeMutableBufferPointer { tb in
            m.softTargets(indices: indices, labels: l.baseAddress!, allLabels: allLabels, epoch: 2, classes: 4, into: tb.baseAddress!)
        } }
        for n in 0..<20 {
            let row = Array(t[(n * 4)..<(n * 4 + 4)])
            #expect(abs(row.reduce(0, +) - 1) < 1e-6)
            if let d = m.draw(sample: n, epoch: 2) {
                var e = [Float](repeating: 0, count: 4); e[Int(labels[n])] += d.lambda; e[Int(allLabels[d.partner])] += 1 - d.lambda
                #expect(row == e)
            } else {
                #expect(row[Int(labels[n])] == 1)
            }
        }
    }

    @Test func betaSamplesHaveTheRightMean() {
        var rng = RandomSource(seed: 9)
        for alpha: Float in [0.2, 1, 4] {
            let xs = (0..<4000).map { _ in SampleMixer.beta(&rng, alpha: alpha) }
            #expect(xs.allSatisfy { $0 >= 0 && $0 <= 1 })
            let mean = xs.reduce(0, +) / Float(xs.count)
            #expect(abs(mean - 0.5) < 0.03, "Beta(\(alpha)) mean \(mean)")
            // Var = 1 / (4(2α + 1)).
            let v = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(xs.count)
            #expect(abs(v - 1 / (4 * (2 * alpha + 1))) < 0.015, "Beta(\(alpha)) variance \(v)")
        }
    }

    @Test func mixingPixels() {
        var o = AugmentOptions(); o.mixupAlpha = 1
        let m = SampleMixer(options: o, seed: 1, population: 10, size: 2)
        var own: [Float] = [1, 1, 1, 1], partner: [Float] = [0, 0, 0, 0]
        own.withUnsafeMutableBufferPointer { a in partner.withUnsafeMutableBufferPointer { b in
            m.mix(a.baseAddress!, partner: b.baseAddress!, draw: MixDraw(partner: 1, lambda: 0.25, box: nil), channels: 1)
        } }
        #expect(own == [0.25, 0.25, 0.25, 0.25])
        var own2: [Float] = [1, 1, 1, 1, 1, 1, 1, 1]
        let partner2: [Float] = [2, 3, 4, 5, 6, 7, 8, 9]
        own2.withUnsafeMutableBufferPointer { a in partner2.withUnsafeBufferPointer { b in
            m.mix(a.baseAddress!, partner: b.baseAddress!, draw: MixDraw(partner: 1, lambda: 0.75, box: (1, 0, 2, 1)), channels: 2)
        } }
        #expect(own2 == [1, 3, 1, 1, 1, 7, 1, 1])
    }

    @Test func optionsAreValidated() {
        var o = AugmentOptions(); o.cropScale = [0.5, 1.5]
        #expect(throws: AugmentError.self) { try o.validate() }
        o = AugmentOptions(); o.randAugmentM = 31; o.randAugmentN = 2
        #expect(throws: AugmentError.self) { try o.validate() }
        o = AugmentOptions(); o.hue = 0.7
        #expect(throws: AugmentError.self) { try o.validate() }
        for name in AugmentOptions.presetNames { #expect(throws: Never.self) { try AugmentOptions.preset(name)!.validate() } }
        #expect(AugmentOptions.preset("wild") == nil)
    }
}
