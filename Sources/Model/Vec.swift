/// Small vectorised kernels over contiguous Float runs (explicit SIMD accumulators: Swift does
/// not reorder float reductions by itself).
enum Vec {
    typealias V = SIMD16<Float>

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }
    @inline(__always) static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }

    static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = V(repeating: 0), i = 0
        while i + 16 <= n { acc += load(x + i); i += 16 }
        var s = acc.sum()
        while i < n { s += x[i]; i += 1 }
        return s
    }

    /// Σ (x − c)²
    static func sumSquaredDeviation(_ x: UnsafePointer<Float>, _ n: Int, from c: Float) -> Float {
        var acc = V(repeating: 0), i = 0
        let cv = V(repeating: c)
        while i + 16 <= n { let d = load(x + i) - cv; acc.addProduct(d, d); i += 16 }
        var s = acc.sum()
        while i < n { let d = x[i] - c; s += d * d; i += 1 }
        return s
    }

    /// (Σ dy, Σ dy·(x − c))
    static func sumAndDotCentered(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int,
                                  center c: Float) -> (Float, Float) {
        var a = V(repeating: 0), b = V(repeating: 0), i = 0
        let cv = V(repeating: c)
        while i + 16 <= n { let g = load(dy + i); a += g; b.addProduct(g, load(x + i) - cv); i += 16 }
        var sa = a.sum(), sb = b.sum()
        while i < n { sa += dy[i]; sb += dy[i] * (x[i] - c); i += 1 }
        return (sa, sb)
    }

    /// y = x·scale + shift
    static func affine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                       scale: Float, shift: Float) {
        var i = 0
        let s = V(repeating: scale), t = V(repeating: shift)
        while i + 16 <= n { store(load(x + i) * s + t, y + i); i += 16 }
        while i < n { y[i] = x[i] * scale + shift; i += 1 }
    }

    /// dx = a·dy + b + cx·(x − mean)
    static func bnBackward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                           _ n: Int, a: Float, b: Float, cx: Float, mean: Float) {
        var i = 0
        let av = V(repeating: a), bv = V(repeating: b), cv = V(repeating: cx), mv = V(repeating: mean)
        while i + 16 <= n { store(av * load(dy + i) + bv + cv * (load(x + i) - mv), dx + i); i += 16 }
        while i < n { dx[i] = a * dy[i] + b + cx * (x[i] - mean); i += 1 }
    }

    /// y = max(x, 0)
    static func relu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let z = V(repeating: 0)
        while i + 16 <= n { store(pointwiseMax(load(x + i), z), y + i); i += 16 }
        while i < n { y[i] = max(x[i], 0); i += 1 }
    }

    /// y = a + b, or max(a + b, 0) with `relu` (one pass: a residual block's add and ReLU).
    static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, relu: Bool) {
        var i = 0
        let z = V(repeating: 0)
        if relu {
            while i + 16 <= n { let s = load(a + i) + load(b + i); store(z.replacing(with: s, where: s .> z), y + i); i += 16 }
            while i < n { let s = a[i] + b[i]; y[i] = s > 0 ? s : 0; i += 1 }
        } else {
            while i + 16 <= n { store(load(a + i) + load(b + i), y + i); i += 16 }
            while i < n { y[i] = a[i] + b[i]; i += 1 }
        }
    }

    /// dx = y > 0 ? dy : 0
    static func reluBackward(_ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let z = V(repeating: 0)
        while i + 16 <= n { store(z.replacing(with: load(dy + i), where: load(y + i) .> z), dx + i); i += 16 }
        while i < n { dx[i] = y[i] > 0 ? dy[i] : 0; i += 1 }
    }

    /// e^x for x ≤ 0 (what the logistic function needs), 16 lanes at once: e^x = 2^n · e^r with
    /// n = round(x·log2 e), r = x − n·ln 2 (ln 2 split in two for accuracy) and e^r from Cephes'
    /// degree-6 polynomial on |r| ≤ ln2/2 (about 1 ulp); x below −87 is clamped (e^−87 ≈ 1.6e−38).
    /// Written with fused multiply-adds and integer bit operations (one select, for the clamp,
    /// which lets NaN through), which the compiler turns into straight vector code.
    @inline(__always) static func expNonPositive(_ x: V) -> V {
        let x = x.replacing(with: V(repeating: -87), where: x .< -87)   // NaN stays NaN
        // Adding 1.5·2²³ rounds x·log2 e to an integer held in the low mantissa bits.
        let magic = V(repeating: 12_582_912)
        let t = magic.addingProduct(x, V(repeating: 1.442_695_04))
        let n = t - magic
        let r = x.addingProduct(n, V(repeating: -0.693_359_375)).addingProduct(n, V(repeating: 2.121_944_4e-4))
        var p = V(repeating: 1.987_569_15e-4)
        p = V(repeating: 1.398_199_95e-3).addingProduct(p, r)
        p = V(repeating: 8.333_451_9e-3).addingProduct(p, r)
        p = V(repeating: 4.166_579_59e-2).addingProduct(p, r)
        p = V(repeating: 1.666_666_55e-1).addingProduct(p, r)
        p = V(repeating: 5.000_000_12e-1).addingProduct(p, r)
        let er = (r + 1).addingProduct(p, r * r)
        // 2^n: (n + 127) in the exponent field; the magic's own bits shift out above bit 31.
        let bits = (unsafeBitCast(t, to: SIMD16<UInt32>.self) &+ 127) &<< 23
        return er * unsafeBitCast(bits, to: V.self)
    }

    /// σ(x) = 1 / (1 + e^−x) on 16 lanes, from e = e^−|x| (never overflows): 1/(1 + e) for
    /// x ≥ 0, e/(1 + e) below (the numerator chosen by x's sign bit).
    @inline(__always) static func logistic(_ x: V) -> V {
        let bits = unsafeBitCast(x, to: SIMD16<Int32>.self)
        let negativeAbs = unsafeBitCast(bits | Int32.min, to: V.self)            // −|x|
        let e = expNonPositive(negativeAbs)
        let negative = bits &>> 31                                              // all ones where x < 0
        let one = unsafeBitCast(V(repeating: 1), to: SIMD16<Int32>.self)
        let numerator = unsafeBitCast((unsafeBitCast(e, to: SIMD16<Int32>.self) & negative) | (one & ~negative), to: V.self)
        return numerator / (e + 1)
    }

    /// `logistic` of one value (the same arithmetic, so scalar tails match the vector lanes).
    @inline(__always) static func logistic(_ x: Float) -> Float { logistic(V(repeating: x))[0] }

    /// y[i] = f(x[i]), 16 lanes at a time; the tail goes through `f` too (zero-padded lanes).
    @inline(__always) static func map(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ f: (V) -> V) {
        var i = 0
        while i + 16 <= n { store(f(load(x + i)), y + i); i += 16 }
        guard i < n else { return }
        var v = V()
        for l in 0..<(n - i) { v[l] = x[i + l] }
        let r = f(v)
        for l in 0..<(n - i) { y[i + l] = r[l] }
    }

    /// c[i] = f(a[i], b[i]), 16 lanes at a time; the tail goes through `f` too.
    @inline(__always) static func map(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                                      _ n: Int, _ f: (V, V) -> V) {
        var i = 0
        while i + 16 <= n { store(f(load(a + i), load(b + i)), c + i); i += 16 }
        guard i < n else { return }
        var u = V(), v = V()
        for l in 0..<(n - i) { u[l] = a[i + l]; v[l] = b[i + l] }
        let r = f(u, v)
        for l in 0..<(n - i) { c[i + l] = r[l] }
    }
}
