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

    /// dx = y > 0 ? dy : 0
    static func reluBackward(_ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let z = V(repeating: 0)
        while i + 16 <= n { store(z.replacing(with: load(dy + i), where: load(y + i) .> z), dx + i); i += 16 }
        while i < n { dx[i] = y[i] > 0 ? dy[i] : 0; i += 1 }
    }
}
