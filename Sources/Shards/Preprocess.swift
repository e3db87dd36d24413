/// Turning decoded images into the model's float input.
public enum Preprocess {
    /// Resizes `image` to `size`×`size` with a bilinear (triangle) filter and normalises each
    /// sample to `(x / 255 - mean[c]) / std[c]`, writing planar CHW floats into `out`
    /// (`image.channels * size * size` values; `mean` and `std` have `image.channels` entries,
    /// or one entry used for every channel).
    ///
    /// The filter is PIL's `Image.resize(..., BILINEAR)` (also torchvision's `Resize` with
    /// `antialias=True`): sample centres at `(i + 0.5) * scale` (align_corners=false); when
    /// upscaling this is plain bilinear interpolation with edge clamping, when downscaling the
    /// triangle is widened by the scale factor so every source pixel contributes (antialiasing;
    /// a 2× downscale weighs a 4-pixel window 1/8, 3/8, 3/8, 1/8 rather than averaging 2×2).
    /// Weights at the borders are renormalised over the pixels that exist. Same size copies
    /// exactly. Unlike PIL, no rounding to 8 bits happens between the horizontal and vertical
    /// passes, so results can differ from PIL by up to about 1/255 before normalisation.
    ///
    /// `out` is written in place; the only scratch (the two filter tables and one vertically
    /// filtered source row) comes from `withUnsafeTemporaryAllocation`, i.e. the stack when the
    /// runtime deems it safe, otherwise one short-lived block. Safe to call from several
    /// threads at once. Measured (release, this machine): 28×28 gray → 32×32 ≈ 6 µs;
    /// 500×375 RGB → 224×224 ≈ 0.8 ms.
    public static func resizeNormalize(_ image: Image, size: Int, mean: [Float], std: [Float],
                                       into out: UnsafeMutablePointer<Float>) {
        let c = image.channels, w = image.width, h = image.height
        precondition(size > 0 && w > 0 && h > 0 && c > 0, "resizeNormalize: empty image or size")
        precondition(image.pixels.count == w * h * c, "resizeNormalize: pixel count does not match the size")
        precondition((mean.count == c || mean.count == 1) && (std.count == c || std.count == 1),
                     "resizeNormalize: mean/std need \(c) entries (or 1)")

        if w == size && h == size {
            normalize(image, into: out, mean: mean, std: std)
            return
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * c) { affine in
            guard let scale = affine.baseAddress else { return }
            let shift = scale + c  // per channel: v * scale + shift
            for ch in 0..<c {
                let m = mean.count == 1 ? mean[0] : mean[ch], s = std.count == 1 ? std[0] : std[ch]
                scale[ch] = 1 / (255 * s)
                shift[ch] = -m / s
            }
            let plane = size * size
            resample(image, size: size) { oy, ox, ch, v in   // written planar
                out[ch * plane + oy * size + ox] = v * scale[ch] + shift[ch]
            }
        }
    }

    /// The same-size case of `resizeNormalize`: `(x / 255 - mean[c]) / std[c]`, HWC → CHW.
    static func normalize(_ image: Image, into out: UnsafeMutablePointer<Float>, mean: [Float], std: [Float]) {
        let c = image.channels, plane = image.width * image.height
        image.pixels.withUnsafeBufferPointer { px in
            guard let src = px.baseAddress else { return }
            for ch in 0..<c {
                let m = mean.count == 1 ? mean[0] : mean[ch], s = std.count == 1 ? std[0] : std[ch]
                let scale = 1 / (255 * s), shift = -m / s
                let dst = out + ch * plane
                for i in 0..<plane { dst[i] = Float(src[i * c + ch]) * scale + shift }
            }
        }
    }

    /// Resizes `image` to `size`×`size` 8-bit pixels (same channels, HWC) with the filter of
    /// `resizeNormalize`, rounding each result to the nearest integer once (PIL rounds after
    /// each of its two passes). `resizeNormalize` of the result at the same size then only
    /// normalises, so a cache can keep images at the model's size in a quarter of the bytes of
    /// floats; the values differ from resizing straight to floats by at most 0.5/255.
    public static func resize(_ image: Image, size: Int) -> Image {
        let c = image.channels, w = image.width, h = image.height
        precondition(size > 0 && w > 0 && h > 0 && c > 0, "resize: empty image or size")
        precondition(image.pixels.count == w * h * c, "resize: pixel count does not match the size")
        if w == size && h == size { return image }
        var pixels = [UInt8](repeating: 0, count: size * size * c)
        pixels.withUnsafeMutableBufferPointer { buf in
            guard let out = buf.baseAddress else { return }
            resample(image, size: size) { oy, ox, ch, v in
                out[(oy * size + ox) * c + ch] = UInt8(truncatingIfNeeded: Int32(min(max(v, 0), 255) + 0.5))  // weights are ≥ 0
            }
        }
        return Image(width: size, height: size, channels: c, pixels: pixels)
    }

    /// The separable triangle filter shared by `resizeNormalize` and `resize`: calls
    /// `emit(outY, outX, channel, value)` once per output sample, row by row, with the value
    /// on the 0...255 scale (unrounded). Inlined so `emit` costs no call.
    @inline(__always)
    static func resample(_ image: Image, size: Int, _ emit: (Int, Int, Int, Float) -> Void) {
        let c = image.channels, w = image.width, h = image.height
        let xTaps = taps(inSize: w, outSize: size), yTaps = taps(inSize: h, outSize: size)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * size) { xStart in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: size * xTaps) { xWeights in
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * size) { yStart in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: size * yTaps) { yWeights in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: w * c) { scratch in
            guard let xs = xStart.baseAddress, let xw = xWeights.baseAddress, let ys = yStart.baseAddress,
                  let yw = yWeights.baseAddress, let row = scratch.baseAddress else { return }  // row: one vertically filtered source row
            computeCoefficients(inSize: w, outSize: size, taps: xTaps, bounds: xs, weights: xw)
            computeCoefficients(inSize: h, outSize: size, taps: yTaps, bounds: ys, weights: yw)
            image.pixels.withUnsafeBufferPointer { px in
                guard let src = px.baseAddress else { return }
                let rowLen = w * c
                for oy in 0..<size {
                    // Vertical pass: combine the contributing source rows into `row`.
                    let y0 = ys[2 * oy], ny = ys[2 * oy + 1], wy = yw + oy * yTaps
                    do {
                        let r = src + y0 * rowLen, k = wy[0]
                        for i in 0..<rowLen { row[i] = Float(r[i]) * k }
                    }
                    var t = 1
                    while t < ny {
                        let r = src + (y0 + t) * rowLen, k = wy[t]
                        for i in 0..<rowLen { row[i] += Float(r[i]) * k }
                        t += 1
                    }
                    // Horizontal pass.
                    for ox in 0..<size {
                        let x0 = xs[2 * ox], nx = xs[2 * ox + 1], wx = xw + ox * xTaps
                        for ch in 0..<c {
                            var acc: Float = 0
                            var p = row + x0 * c + ch
                            for j in 0..<nx { acc += p.pointee * wx[j]; p += c }
                            emit(oy, ox, ch, acc)
                        }
                    }
                }
            }
        }}}}}
    }

    /// Maximum number of source pixels that contribute to one output pixel.
    static func taps(inSize: Int, outSize: Int) -> Int {
        let scale = Double(inSize) / Double(outSize)
        let support = max(scale, 1.0)  // triangle support 1, widened when downscaling
        return Int(support.rounded(.up)) * 2 + 1
    }

    /// PIL's `precompute_coeffs` for the triangle filter: for output `i`, `bounds[2i]` is the
    /// first source index and `bounds[2i+1]` the count; weights (normalised to sum 1) are at
    /// `weights[i * taps ..< i * taps + count]`.
    static func computeCoefficients(inSize: Int, outSize: Int, taps: Int,
                                    bounds: UnsafeMutablePointer<Int>, weights: UnsafeMutablePointer<Float>) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = filterScale  // bilinear support (1) × filterScale
        let invFilterScale = 1.0 / filterScale
        for i in 0..<outSize {
            let center = (Double(i) + 0.5) * scale
            var xmin = Int(center - support + 0.5)  // truncation, as in C
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            var count = xmax - xmin
            if count > taps { count = taps }
            if count < 1 {  // cannot happen for valid sizes; keep the nearest pixel
                xmin = min(max(Int(center), 0), inSize - 1); count = 1
            }
            func tri(_ j: Int) -> Double {
                max(0.0, 1.0 - abs((Double(j + xmin) - center + 0.5) * invFilterScale))
            }
            var total = 0.0
            for j in 0..<count { total += tri(j) }
            let inv = total > 0 ? 1.0 / total : 0
            for j in 0..<count { weights[i * taps + j] = Float(tri(j) * inv) }
            if total == 0 { weights[i * taps] = 1 }
            bounds[2 * i] = xmin
            bounds[2 * i + 1] = count
        }
    }
}
