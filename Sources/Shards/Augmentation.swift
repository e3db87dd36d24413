import Foundation
import Support

/// What training-time augmentation does to each sample (all off by default). Validation and
/// test data are never augmented.
///
/// Geometric operations (random resized crop, flips, rotation, affine, RandAugment's shears,
/// translations and rotations) run on the image as the memory cache holds it — already resized
/// to the model's `imageSize` — and are composed into ONE affine map sampled once with bilinear
/// interpolation (one interpolation per sample, no intermediate images). So a crop of scale s
/// is upsampled by 1/√s from the cached image rather than resampled from the original: exact
/// for datasets stored at or below the model size (Fashion-MNIST, CIFAR), slightly softer than
/// torchvision for large photos at small crop scales; the cache keeps its bytes per image.
/// Points that fall outside the image are filled with black (0), as torchvision does.
///
/// Pixel operations then run on the warped CHW floats in [0, 1]: RandAugment's pixel operations
/// in the order drawn, then colour jitter (its four parts in a random order), then
/// normalisation. Mixup/cutmix (`mixupAlpha`, `cutmixAlpha`) are applied by `SampleMixer`.
public struct AugmentOptions: Codable, Sendable, Equatable {
    /// Random resized crop: area fraction range and aspect-ratio range (nil: no crop).
    public var cropScale: [Float]? = nil
    public var cropRatio: [Float] = [3.0 / 4.0, 4.0 / 3.0]
    /// Flip probabilities.
    public var hflip: Float = 0
    public var vflip: Float = 0
    /// Rotation by an angle uniform in ±`rotate` degrees.
    public var rotate: Float = 0
    /// Affine: translation up to ±`translate` × size on each axis, scale uniform in `scale`,
    /// x-shear uniform in ±`shear` degrees.
    public var translate: Float = 0
    public var scale: [Float]? = nil
    public var shear: Float = 0
    /// Colour jitter strengths as in torchvision's ColorJitter: factors uniform in
    /// [max(0, 1 − b), 1 + b] etc., hue shift uniform in ±`hue` (≤ 0.5).
    public var brightness: Float = 0
    public var contrast: Float = 0
    public var saturation: Float = 0
    public var hue: Float = 0
    /// RandAugment: `randAugmentN` operations per image at magnitude `randAugmentM` (0...30).
    public var randAugmentN = 0
    public var randAugmentM = 9
    /// Mixup / cutmix Beta(α, α) parameters (0: off); probability that a sample is mixed; when
    /// both are on, cutmix is chosen for half of the mixed samples.
    public var mixupAlpha: Float = 0
    public var cutmixAlpha: Float = 0
    public var mixProb: Float = 1

    public init() {}

    /// The named presets of `--augment`.
    public static let presetNames = ["none", "basic", "strong"]

    /// `none`; `basic`: random resized crop (scale 0.35–1) + horizontal flip; `strong`: crop
    /// (0.25–1) + horizontal flip + RandAugment 2,9 + mixup 0.2 / cutmix 1.0 on every sample.
    public static func preset(_ name: String) -> AugmentOptions? {
        var o = AugmentOptions()
        switch name {
        case "none": return o
        case "basic":
            o.cropScale = [0.35, 1]; o.hflip = 0.5
        case "strong":
            o.cropScale = [0.25, 1]; o.hflip = 0.5
            o.randAugmentN = 2; o.randAugmentM = 9
            o.mixupAlpha = 0.2; o.cutmixAlpha = 1.0; o.mixProb = 1
        default: return nil
        }
        return o
    }

    /// Whether any per-image transform is on (mixing aside).
    public var transformsImages: Bool {
        cropScale != nil || hflip > 0 || vflip > 0 || rotate != 0 || translate != 0 || scale != nil || shear != 0
            || brightness > 0 || contrast > 0 || saturation > 0 || hue > 0 || randAugmentN > 0
    }
    /// Whether mixup or cutmix is on.
    public var mixes: Bool { (mixupAlpha > 0 || cutmixAlpha > 0) && mixProb > 0 }

    /// Throws a message naming the offending option.
    public func validate() throws(AugmentError) {
        func bad(_ s: String) -> AugmentError { AugmentError.invalid(s) }
        if let s = cropScale {
            guard s.count == 2, s[0] > 0, s[0] <= s[1], s[1] <= 1 else { throw bad("--crop-scale needs MIN,MAX with 0 < MIN ≤ MAX ≤ 1, got \(s)") }
        }
        guard cropRatio.count == 2, cropRatio[0] > 0, cropRatio[0] <= cropRatio[1] else {
            throw bad("--crop-ratio needs MIN,MAX with 0 < MIN ≤ MAX, got \(cropRatio)")
        }
        for (name, p) in [("hflip", hflip), ("vflip", vflip), ("mix-prob", mixProb)] where !(0...1).contains(p) {
            throw bad("--\(name) probability must be in [0, 1], got \(p)")
        }
        guard rotate >= 0, rotate <= 180 else { throw bad("--rotate must be in [0, 180] degrees, got \(rotate)") }
        guard translate >= 0, translate <= 1 else { throw bad("--translate must be in [0, 1] (fraction of the size), got \(translate)") }
        if let s = scale { guard s.count == 2, s[0] > 0, s[0] <= s[1] else { throw bad("--scale needs MIN,MAX with 0 < MIN ≤ MAX, got \(s)") } }
        guard shear >= 0, shear < 90 else { throw bad("--shear must be in [0, 90) degrees, got \(shear)") }
        for (name, v) in [("brightness", brightness), ("contrast", contrast), ("saturation", saturation)] where v < 0 {
            throw bad("--color-jitter \(name) must be ≥ 0, got \(v)")
        }
        guard hue >= 0, hue <= 0.5 else { throw bad("--color-jitter hue must be in [0, 0.5], got \(hue)") }
        guard randAugmentN >= 0, randAugmentN <= 16, (0...30).contains(randAugmentM) else {
            throw bad("--randaugment needs N,M with 0 ≤ N ≤ 16 and 0 ≤ M ≤ 30, got \(randAugmentN),\(randAugmentM)")
        }
        guard mixupAlpha >= 0, cutmixAlpha >= 0 else { throw bad("--mixup/--cutmix alpha must be ≥ 0") }
    }

    /// A short description for logs and the run record.
    public var summary: String {
        var parts: [String] = []
        if let s = cropScale { parts.append("crop \(s[0])-\(s[1]) ratio \(cropRatio[0])-\(cropRatio[1])") }
        if hflip > 0 { parts.append("hflip \(hflip)") }
        if vflip > 0 { parts.append("vflip \(vflip)") }
        if rotate != 0 { parts.append("rotate \(rotate)") }
        if translate != 0 || scale != nil || shear != 0 {
            parts.append("affine translate \(translate) scale \(scale.map { "\($0[0])-\($0[1])" } ?? "1") shear \(shear)")
        }
        if brightness > 0 || contrast > 0 || saturation > 0 || hue > 0 {
            parts.append("jitter \(brightness),\(contrast),\(saturation),\(hue)")
        }
        if randAugmentN > 0 { parts.append("randaugment \(randAugmentN),\(randAugmentM)") }
        if mixupAlpha > 0 { parts.append("mixup \(mixupAlpha)") }
        if cutmixAlpha > 0 { parts.append("cutmix \(cutmixAlpha)") }
        if mixes { parts.append("mix-prob \(mixProb)") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}

public enum AugmentError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalid(String)
    public var description: String { switch self { case let .invalid(s): return s } }
}

/// A 2-D affine map (x, y) → (a·x + b·y + tx, c·x + d·y + ty) in pixel-index coordinates
/// (pixel i's centre at i).
public struct Affine2D: Sendable, Equatable {
    public var a: Float, b: Float, c: Float, d: Float, tx: Float, ty: Float
    public init(a: Float, b: Float, c: Float, d: Float, tx: Float, ty: Float) {
        self.a = a; self.b = b; self.c = c; self.d = d; self.tx = tx; self.ty = ty
    }
    public static let identity = Affine2D(a: 1, b: 0, c: 0, d: 1, tx: 0, ty: 0)
    public var isIdentity: Bool { self == .identity }

    public func apply(_ x: Float, _ y: Float) -> (Float, Float) { (a * x + b * y + tx, c * x + d * y + ty) }

    /// `self ∘ other`: first `other`, then `self`.
    public func after(_ o: Affine2D) -> Affine2D {
        Affine2D(a: a * o.a + b * o.c, b: a * o.b + b * o.d, c: c * o.a + d * o.c, d: c * o.b + d * o.d,
                 tx: a * o.tx + b * o.ty + tx, ty: c * o.tx + d * o.ty + ty)
    }

    public var inverse: Affine2D {
        let det = a * d - b * c
        let ia = d / det, ib = -b / det, ic = -c / det, id = a / det
        return Affine2D(a: ia, b: ib, c: ic, d: id, tx: -(ia * tx + ib * ty), ty: -(ic * tx + id * ty))
    }

    /// Output pixel → source pixel of cropping the box (x0, y0, w, h) of the source and resizing
    /// it to `size`×`size` (pixel centres at (i + 0.5)·w/size, as in `Preprocess`).
    public static func crop(x0: Float, y0: Float, width w: Float, height h: Float, size: Int) -> Affine2D {
        let sx = w / Float(size), sy = h / Float(size)
        return Affine2D(a: sx, b: 0, c: 0, d: sy, tx: x0 + 0.5 * sx - 0.5, ty: y0 + 0.5 * sy - 0.5)
    }

    /// The mirror images of an n×n grid (their own inverses).
    public static func hflip(size n: Int) -> Affine2D { Affine2D(a: -1, b: 0, c: 0, d: 1, tx: Float(n - 1), ty: 0) }
    public static func vflip(size n: Int) -> Affine2D { Affine2D(a: 1, b: 0, c: 0, d: -1, tx: 0, ty: Float(n - 1)) }

    /// The FORWARD map of torchvision's affine about the centre of an n×n image: rotate by
    /// `degrees` counter-clockwise as seen on screen, x-shear by `shearX` / y-shear by `shearY`
    /// degrees, scale, then translate by (tx, ty) pixels. Sampling needs its `inverse`.
    public static func about(size n: Int, degrees: Float = 0, scale: Float = 1, shearX: Float = 0, shearY: Float = 0,
                             translateX: Float = 0, translateY: Float = 0) -> Affine2D {
        let r = degrees * .pi / 180
        let cs = Float(cos(Double(r))), sn = Float(sin(Double(r)))
        // y points down: counter-clockwise on screen is (x, y) → (x cos + y sin, −x sin + y cos).
        let rot = Affine2D(a: cs, b: sn, c: -sn, d: cs, tx: 0, ty: 0)
        let shx = Float(tan(Double(shearX) * .pi / 180)), shy = Float(tan(Double(shearY) * .pi / 180))
        let sh = Affine2D(a: 1, b: shx, c: shy, d: 1, tx: 0, ty: 0)
        let sc = Affine2D(a: scale, b: 0, c: 0, d: scale, tx: 0, ty: 0)
        let m = rot.after(sh).after(sc)
        let ctr = Float(n - 1) / 2
        // T(centre + translate) · M · T(−centre)
        return Affine2D(a: m.a, b: m.b, c: m.c, d: m.d,
                        tx: ctr + translateX - (m.a * ctr + m.b * ctr), ty: ctr + translateY - (m.c * ctr + m.d * ctr))
    }
}

/// Image operations on planar CHW floats in [0, 1] (`channels` planes of `size`×`size`).
/// Used by `Augmenter`; public so tests can check them against hand-computed pixels.
public enum ImageOps {
    /// Writes `out[c][y][x]` = bilinear sample of `image` (8-bit HWC, scaled to [0, 1]) at
    /// `map(x, y)` for an `outSize`×`outSize` output. Points inside the image area
    /// (−0.5 ≤ u ≤ w − 0.5) clamp to the border pixels; points outside are `fill`. An identity
    /// map on a same-size image copies exactly.
    public static func warp(_ image: Image, map m: Affine2D, outSize: Int, fill: Float = 0, into out: UnsafeMutablePointer<Float>) {
        let c = image.channels, w = image.width, h = image.height
        let plane = outSize * outSize
        let inv: Float = 1 / 255
        image.pixels.withUnsafeBufferPointer { px in
            guard let src = px.baseAddress else { return }
            if m.isIdentity && w == outSize && h == outSize {
                for i in 0..<plane { for ch in 0..<c { out[ch * plane + i] = Float(src[i * c + ch]) / 255 } }
                return
            }
            let maxX = Float(w) - 0.5, maxY = Float(h) - 0.5
            for oy in 0..<outSize {
                var u = m.b * Float(oy) + m.tx, v = m.d * Float(oy) + m.ty
                for ox in 0..<outSize {
                    let o = oy * outSize + ox
                    if u < -0.5 || u > maxX || v < -0.5 || v > maxY {
                        for ch in 0..<c { out[ch * plane + o] = fill }
                    } else {
                        let x = min(max(u, 0), Float(w - 1)), y = min(max(v, 0), Float(h - 1))
                        let x0 = Int(x), y0 = Int(y)
                        let fx = x - Float(x0), fy = y - Float(y0)
                        let x1 = min(x0 + 1, w - 1), y1 = min(y0 + 1, h - 1)
                        let p00 = (y0 * w + x0) * c, p01 = (y0 * w + x1) * c, p10 = (y1 * w + x0) * c, p11 = (y1 * w + x1) * c
                        let w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy
                        @inline(__always) func tap(_ ch: Int) -> Float {
                            (Float(src[p00 + ch]) * w00 + Float(src[p01 + ch]) * w01
                                + Float(src[p10 + ch]) * w10 + Float(src[p11 + ch]) * w11) * inv
                        }
                        if c == 1 {
                            out[o] = tap(0)
                        } else if c == 3 {
                            out[o] = tap(0); out[plane + o] = tap(1); out[2 * plane + o] = tap(2)
                        } else {
                            for ch in 0..<c { out[ch * plane + o] = tap(ch) }
                        }
                    }
                    u += m.a; v += m.c
                }
            }
        }
    }

    @inline(__always) static func clamp01(_ v: Float) -> Float { min(max(v, 0), 1) }

    /// x · f, clamped to [0, 1] (PIL/torchvision brightness).
    public static func brightness(_ x: UnsafeMutablePointer<Float>, count: Int, factor f: Float) {
        for i in 0..<count { x[i] = clamp01(x[i] * f) }
    }

    /// Blend with the mean of the image's grayscale: f·x + (1 − f)·mean.
    public static func contrast(_ x: UnsafeMutablePointer<Float>, channels: Int, size: Int, factor f: Float) {
        let plane = size * size
        var sum: Float = 0
        if channels == 3 {
            for i in 0..<plane { sum += 0.299 * x[i] + 0.587 * x[plane + i] + 0.114 * x[2 * plane + i] }
        } else {
            for i in 0..<plane { sum += x[i] }
        }
        let mean = sum / Float(plane)
        for i in 0..<(channels * plane) { x[i] = clamp01(f * x[i] + (1 - f) * mean) }
    }

    /// Blend each RGB pixel with its grayscale value: f·x + (1 − f)·gray. No-op for 1 channel.
    public static func saturation(_ x: UnsafeMutablePointer<Float>, channels: Int, size: Int, factor f: Float) {
        guard channels == 3 else { return }
        let plane = size * size
        for i in 0..<plane {
            let r = x[i], g = x[plane + i], b = x[2 * plane + i]
            let gray = 0.299 * r + 0.587 * g + 0.114 * b
            x[i] = clamp01(f * r + (1 - f) * gray)
            x[plane + i] = clamp01(f * g + (1 - f) * gray)
            x[2 * plane + i] = clamp01(f * b + (1 - f) * gray)
        }
    }

    /// Rotates the hue of each RGB pixel by `shift` turns (−0.5...0.5) through HSV. No-op for 1 channel.
    public static func hue(_ x: UnsafeMutablePointer<Float>, channels: Int, size: Int, shift: Float) {
        guard channels == 3, shift != 0 else { return }
        let plane = size * size
        // Branch-free RGB → HSV → RGB: hue h from the largest channel; then channel n (R 5, G 3,
        // B 1) = v − v·s·clamp(min(k, 4 − k), 0, 1) with k = (n + 6h) mod 6 and v·s = max − min
        // (so a gray pixel, whose v·s is 0, is unchanged).
        let shift6 = shift * 6
        for i in 0..<plane {
            let r = x[i], g = x[plane + i], b = x[2 * plane + i]
            let mx = max(r, max(g, b)), mn = min(r, min(g, b)), delta = mx - mn
            let inv: Float = delta > 0 ? 1 / delta : 0
            let hr = (g - b) * inv, hg = 2 + (b - r) * inv, hb = 4 + (r - g) * inv
            var h6 = (mx == r ? hr : (mx == g ? hg : hb)) + shift6   // in [−4, 9): wrap to [0, 6)
            h6 = h6 < 0 ? h6 + 6 : (h6 >= 6 ? h6 - 6 : h6)
            var kr = h6 + 5, kg = h6 + 3, kb = h6 + 1
            kr = kr >= 6 ? kr - 6 : kr; kg = kg >= 6 ? kg - 6 : kg; kb = kb >= 6 ? kb - 6 : kb
            x[i] = mx - delta * Swift.max(0, Swift.min(Swift.min(kr, 4 - kr), 1))
            x[plane + i] = mx - delta * Swift.max(0, Swift.min(Swift.min(kg, 4 - kg), 1))
            x[2 * plane + i] = mx - delta * Swift.max(0, Swift.min(Swift.min(kb, 4 - kb), 1))
        }
    }

    /// Blend with PIL's smoothed image (3×3 kernel 1 1 1 / 1 5 1 / 1 1 1, ÷13; border pixels
    /// kept): f·x + (1 − f)·smooth. `scratch` holds one plane.
    public static func sharpness(_ x: UnsafeMutablePointer<Float>, channels: Int, size n: Int, factor f: Float,
                                 scratch: UnsafeMutablePointer<Float>) {
        guard n >= 3 else { return }
        let plane = n * n
        for ch in 0..<channels {
            let p = x + ch * plane
            scratch.update(from: p, count: plane)
            for y in 1..<(n - 1) {
                for xx in 1..<(n - 1) {
                    let i = y * n + xx
                    var s = 4 * scratch[i]
                    for dy in -1...1 { for dx in -1...1 { s += scratch[i + dy * n + dx] } }
                    p[i] = clamp01(f * scratch[i] + (1 - f) * s / 13)
                }
            }
        }
    }

    /// Keeps the top `bits` bits of each 8-bit value.
    public static func posterize(_ x: UnsafeMutablePointer<Float>, count: Int, bits: Int) {
        let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - min(max(bits, 0), 8)))
        for i in 0..<count { x[i] = Float(quantize(x[i]) & mask) / 255 }
    }

    /// Inverts values at or above `threshold`.
    public static func solarize(_ x: UnsafeMutablePointer<Float>, count: Int, threshold: Float) {
        for i in 0..<count where x[i] >= threshold { x[i] = 1 - x[i] }
    }

    /// Stretches each channel to [0, 1] (unchanged when constant).
    public static func autocontrast(_ x: UnsafeMutablePointer<Float>, channels: Int, size: Int) {
        let plane = size * size
        for ch in 0..<channels {
            let p = x + ch * plane
            var lo = p[0], hi = p[0]
            for i in 0..<plane { lo = min(lo, p[i]); hi = max(hi, p[i]) }
            guard hi > lo else { continue }
            let s = 1 / (hi - lo)
            for i in 0..<plane { p[i] = (p[i] - lo) * s }
        }
    }

    /// PIL's `ImageOps.equalize` per channel on the 8-bit values.
    public static func equalize(_ x: UnsafeMutablePointer<Float>, channels: Int, size: Int) {
        let plane = size * size
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 256) { hist in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256) { lut in
                for ch in 0..<channels {
                    let p = x + ch * plane
                    for k in 0..<256 { hist[k] = 0 }
                    for i in 0..<plane { hist[Int(quantize(p[i]))] += 1 }
                    var last = 255
                    while last > 0 && hist[last] == 0 { last -= 1 }
                    let step = (plane - hist[last]) / 255
                    guard step > 0 else { continue }
                    var n = step / 2
                    for k in 0..<256 { lut[k] = UInt8(min(n / step, 255)); n += hist[k] }
                    for i in 0..<plane { p[i] = Float(lut[Int(quantize(p[i]))]) / 255 }
                }
            }
        }
    }

    @inline(__always) static func quantize(_ v: Float) -> UInt8 { UInt8(clamp01(v) * 255 + 0.5) }
}

/// Applies `AugmentOptions` to one sample. Every random draw comes from a generator seeded by
/// (seed, epoch, sample index) only, so a sample gets the same pixels whatever the world size,
/// loader thread count or its position in a batch.
///
///     let aug = Augmenter(options: o, seed: 1, size: 32, channels: 3)
///     aug.apply(image, sample: i, epoch: e, into: chw, scratch: plane)   // CHW floats in [0, 1]
public struct Augmenter: Sendable {
    public let options: AugmentOptions
    public let seed: UInt64
    public let size: Int
    public let channels: Int
    /// Floats of one output sample (`channels`·`size`²); `apply` needs `size`² floats of scratch.
    public var sampleCount: Int { channels * size * size }

    public init(options: AugmentOptions, seed: UInt64, size: Int, channels: Int) {
        self.options = options; self.seed = seed; self.size = size; self.channels = channels
    }

    /// The generator of sample `index` in `epoch` for one purpose (distinct streams per purpose).
    public static func generator(seed: UInt64, epoch: Int, sample: Int, purpose: UInt64) -> RandomSource {
        RandomSource(seed: seed ^ (purpose &* 0xD6E8_FEB8_6659_FD93), stream: (UInt64(truncatingIfNeeded: epoch) << 40) ^ UInt64(truncatingIfNeeded: sample))
    }
    static let purposeAugment: UInt64 = 0xA9
    static let purposeMix: UInt64 = 0x31

    /// RandAugment's operations (torchvision's list).
    enum RandOp: Int, CaseIterable {
        case identity, shearX, shearY, translateX, translateY, rotate
        case brightness, color, contrast, sharpness, posterize, solarize, autoContrast, equalize
        var isGeometric: Bool { rawValue >= 1 && rawValue <= 5 }
    }

    /// The output-pixel → cached-image-pixel map of sample `sample` in `epoch` (crop, flips,
    /// rotation/affine and RandAugment's geometric operations), with the generator positioned
    /// after the geometric draws and a copy of it positioned at RandAugment's draws.
    func geometry(_ rng: inout RandomSource, width: Int, height: Int) -> (map: Affine2D, randAugment: RandomSource) {
        let o = options, n = size
        // source ← crop ← flip ← affine⁻¹ ← randaugment geometric⁻¹
        var map: Affine2D
        if let scale = o.cropScale {
            let (x0, y0, cw, ch) = Self.cropBox(&rng, width: width, height: height, scale: scale, ratio: o.cropRatio)
            map = .crop(x0: x0, y0: y0, width: cw, height: ch, size: n)
        } else if width != n || height != n {
            map = .crop(x0: 0, y0: 0, width: Float(width), height: Float(height), size: n)
        } else {
            map = .identity
        }
        if o.hflip > 0, rng.nextFloat() < o.hflip { map = map.after(.hflip(size: n)) }
        if o.vflip > 0, rng.nextFloat() < o.vflip { map = map.after(.vflip(size: n)) }
        if o.rotate != 0 || o.translate != 0 || o.scale != nil || o.shear != 0 {
            let deg = o.rotate != 0 ? (2 * rng.nextFloat() - 1) * o.rotate : 0
            let tx = o.translate != 0 ? (2 * rng.nextFloat() - 1) * o.translate * Float(n) : 0
            let ty = o.translate != 0 ? (2 * rng.nextFloat() - 1) * o.translate * Float(n) : 0
            let sc = o.scale.map { $0[0] + rng.nextFloat() * ($0[1] - $0[0]) } ?? 1
            let sh = o.shear != 0 ? (2 * rng.nextFloat() - 1) * o.shear : 0
            map = map.after(Affine2D.about(size: n, degrees: deg, scale: sc, shearX: sh, translateX: tx, translateY: ty).inverse)
        }
        let randState = rng
        if o.randAugmentN > 0 {
            let m = Float(o.randAugmentM) / 30
            for _ in 0..<o.randAugmentN {
                let op = RandOp(rawValue: rng.nextInt(below: RandOp.allCases.count))!
                let sign: Float = rng.nextFloat() < 0.5 ? -1 : 1
                guard op.isGeometric else { continue }
                let g: Affine2D
                switch op {
                case .shearX: g = .about(size: n, shearX: sign * Float(atan(Double(0.3 * m)) * 180 / .pi))
                case .shearY: g = .about(size: n, shearY: sign * Float(atan(Double(0.3 * m)) * 180 / .pi))
                case .translateX: g = .about(size: n, translateX: sign * m * 150 / 331 * Float(n))
                case .translateY: g = .about(size: n, translateY: sign * m * 150 / 331 * Float(n))
                default: g = .about(size: n, degrees: sign * 30 * m)
                }
                map = map.after(g.inverse)
            }
        }
        return (map, randState)
    }

    /// torchvision's `RandomResizedCrop.get_params`: 10 tries at a random area and log-uniform
    /// aspect ratio, then the centre crop at the clamped ratio. Returns (x0, y0, width, height).
    static func cropBox(_ rng: inout RandomSource, width: Int, height: Int, scale: [Float], ratio: [Float]) -> (Float, Float, Float, Float) {
        let area = Float(width * height)
        let lr0 = Float(log(Double(ratio[0]))), lr1 = Float(log(Double(ratio[1])))
        for _ in 0..<10 {
            let target = area * (scale[0] + rng.nextFloat() * (scale[1] - scale[0]))
            let aspect = Float(exp(Double(lr0 + rng.nextFloat() * (lr1 - lr0))))
            let w = Int((target * aspect).squareRoot().rounded()), h = Int((target / aspect).squareRoot().rounded())
            if w > 0 && w <= width && h > 0 && h <= height {
                let y0 = rng.nextInt(below: height - h + 1), x0 = rng.nextInt(below: width - w + 1)
                return (Float(x0), Float(y0), Float(w), Float(h))
            }
        }
        let inRatio = Float(width) / Float(height)
        var w = width, h = height
        if inRatio < ratio[0] { h = Int((Float(w) / ratio[0]).rounded()) } else if inRatio > ratio[1] { w = Int((Float(h) * ratio[1]).rounded()) }
        return (Float((width - w) / 2), Float((height - h) / 2), Float(w), Float(h))
    }

    /// Writes the augmented sample `sample` of `epoch` into `out` as CHW floats in [0, 1]
    /// (not yet normalised). `scratch` holds `size`² floats. Allocates nothing.
    public func apply(_ image: Image, sample: Int, epoch: Int, into out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        precondition(image.channels == channels, "Augmenter: image has \(image.channels) channels, expected \(channels)")
        var rng = Self.generator(seed: seed, epoch: epoch, sample: sample, purpose: Self.purposeAugment)
        let (map, randState) = geometry(&rng, width: image.width, height: image.height)
        ImageOps.warp(image, map: map, outSize: size, into: out)
        let o = options, count = sampleCount
        if o.randAugmentN > 0 {
            var r = randState
            let m = Float(o.randAugmentM) / 30
            for _ in 0..<o.randAugmentN {
                let op = RandOp(rawValue: r.nextInt(below: RandOp.allCases.count))!
                let sign: Float = r.nextFloat() < 0.5 ? -1 : 1
                let factor = 1 + sign * 0.9 * m
                switch op {
                case .brightness: ImageOps.brightness(out, count: count, factor: factor)
                case .color: ImageOps.saturation(out, channels: channels, size: size, factor: factor)
                case .contrast: ImageOps.contrast(out, channels: channels, size: size, factor: factor)
                case .sharpness: ImageOps.sharpness(out, channels: channels, size: size, factor: factor, scratch: scratch)
                case .posterize: ImageOps.posterize(out, count: count, bits: 8 - Int((m * 4).rounded()))
                case .solarize: ImageOps.solarize(out, count: count, threshold: 1 - m)
                case .autoContrast: ImageOps.autocontrast(out, channels: channels, size: size)
                case .equalize: ImageOps.equalize(out, channels: channels, size: size)
                default: break   // identity; geometric ones are in the warp
                }
            }
        }
        if o.brightness > 0 || o.contrast > 0 || o.saturation > 0 || o.hue > 0 {
            func factor(_ s: Float) -> Float { max(0, 1 - s) + rng.nextFloat() * (1 + s - max(0, 1 - s)) }
            let b = o.brightness > 0 ? factor(o.brightness) : 1
            let c = o.contrast > 0 ? factor(o.contrast) : 1
            let s = o.saturation > 0 ? factor(o.saturation) : 1
            let h = o.hue > 0 ? (2 * rng.nextFloat() - 1) * o.hue : 0
            var order = SIMD4<Int32>(0, 1, 2, 3)   // torchvision applies the four in a random order
            for i in stride(from: 3, to: 0, by: -1) { let j = rng.nextInt(below: i + 1); let t = order[i]; order[i] = order[j]; order[j] = t }
            for k in 0..<4 {
                switch order[k] {
                case 0: if b != 1 { ImageOps.brightness(out, count: count, factor: b) }
                case 1: if c != 1 { ImageOps.contrast(out, channels: channels, size: size, factor: c) }
                case 2: if s != 1 { ImageOps.saturation(out, channels: channels, size: size, factor: s) }
                default: if h != 0 { ImageOps.hue(out, channels: channels, size: size, shift: h) }
                }
            }
        }
    }
}
