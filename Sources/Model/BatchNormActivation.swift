/// BatchNorm fused with the activation that follows it.
///
/// Where a `BatchNorm2d` is directly followed (in the same run of layers: the network's top
/// level or one `Sequential`) by ReLU, ReLU6 or SiLU, the BatchNorm *absorbs* the activation:
/// its forward writes act(bn(x)) in one pass, and its backward folds act'(·)·dy into its own
/// passes (the pre-activation z = bn(x) is recomputed from x, mean, 1/σ, γ and β rather than
/// stored). The activation layer stays in the layer list — same names, same tensors (none),
/// same checkpoints — but becomes a pass-through: `Network` and `Sequential` alias its output to its
/// input and skip it in forward and backward, so it costs neither a buffer nor a pass.
/// A residual block's ReLU after the add is not a layer of its own and is never absorbed.

/// The activations a BatchNorm can absorb.
public enum FusedActivation: String, Sendable {
    case relu, relu6, silu
}

/// An elementwise activation a BatchNorm directly before it can compute (ReLU, ReLU6, SiLU).
protocol AbsorbableActivation: Layer {
    var fusedForm: FusedActivation { get }
    /// Set by `fuseBatchNormActivations`: the layer is then the identity (the BatchNorm before it
    /// applies the activation) and the containers skip it.
    var absorbed: Bool { get set }
}

extension ReLU: AbsorbableActivation { var fusedForm: FusedActivation { .relu } }
extension ReLU6: AbsorbableActivation { var fusedForm: FusedActivation { .relu6 } }
extension SiLU: AbsorbableActivation { var fusedForm: FusedActivation { .silu } }

/// A layer whose output is its input: an absorbed activation.
@inline(__always) func isPassThrough(_ layer: Layer) -> Bool {
    (layer as? AbsorbableActivation)?.absorbed ?? false
}

/// Identity forward/backward of an absorbed activation called directly (containers skip it).
@inline(__always) func passThrough(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    if UnsafePointer(y) != x { y.update(from: x, count: n) }
}

/// A layer that holds runs of sub-layers in which a BatchNorm may absorb its successor.
protocol ActivationFusing {
    /// Fuses inside every run of sub-layers (see `fuseBatchNormActivations`). Before `prepare`.
    func fuseActivations()
}

extension Sequential: ActivationFusing {
    func fuseActivations() { sublayers.fuseBatchNormActivations() }
}
extension ResidualBlock: ActivationFusing {
    func fuseActivations() { body.fuseActivations(); shortcut?.fuseActivations() }
}
extension SqueezeExcitation: ActivationFusing {
    func fuseActivations() { gate.fuseActivations() }
}
extension MetadataFusion: ActivationFusing {
    func fuseActivations() { encoder.fuseActivations(); fuse.fuseActivations() }
}

extension Array where Element == NamedLayer {
    /// Treats the layers as a run (each feeds the next): every BatchNorm2d directly followed by
    /// an absorbable activation absorbs it; composite layers fuse inside their own runs.
    func fuseBatchNormActivations() {
        for (i, l) in enumerated() {
            (l.layer as? ActivationFusing)?.fuseActivations()
            guard i + 1 < count, let bn = l.layer as? BatchNorm2d, bn.activation == nil,
                  let act = self[i + 1].layer as? AbsorbableActivation, !act.absorbed else { continue }
            bn.activation = act.fusedForm
            act.absorbed = true
        }
    }
}

extension Network {
    /// How many BatchNorm layers (at any depth) compute the activation after them.
    public var fusedBatchNormCount: Int {
        func count(_ l: Layer) -> Int {
            if let c = l as? CompositeLayer { return c.sublayers.map { count($0.layer) }.reduce(0, +) }
            return (l as? BatchNorm2d)?.activation == nil ? 0 : 1
        }
        return layers.map { count($0.layer) }.reduce(0, +)
    }
}

// MARK: The arithmetic of the fused BatchNorm (SiLU's also serves the stand-alone SiLU layer)

/// An activation as pointwise maps on scalars and 16-lane vectors (bit-identical to each other
/// and to the stand-alone layers: same operations in the same order).
protocol PointwiseActivation {
    /// Whether backward recomputes act'(z) in each pass (cheap) rather than storing act'(z)·dy once.
    static var cheap: Bool { get }
    static func apply(_ z: Float) -> Float
    static func apply(_ z: SIMD16<Float>) -> SIMD16<Float>
    /// act'(z) · dy
    static func gradient(_ z: Float, _ dy: Float) -> Float
    static func gradient(_ z: SIMD16<Float>, _ dy: SIMD16<Float>) -> SIMD16<Float>
}

enum IdentityActivation: PointwiseActivation {
    static var cheap: Bool { true }
    @inline(__always) static func apply(_ z: Float) -> Float { z }
    @inline(__always) static func apply(_ z: SIMD16<Float>) -> SIMD16<Float> { z }
    @inline(__always) static func gradient(_ z: Float, _ dy: Float) -> Float { dy }
    @inline(__always) static func gradient(_ z: SIMD16<Float>, _ dy: SIMD16<Float>) -> SIMD16<Float> { dy }
}

/// ReLU; its gradient passes where z > 0 (⇔ y > 0, what the stand-alone layer tests).
enum ReLUActivation: PointwiseActivation {
    static var cheap: Bool { true }
    @inline(__always) static func apply(_ z: Float) -> Float { max(z, 0) }
    @inline(__always) static func apply(_ z: SIMD16<Float>) -> SIMD16<Float> { z.replacing(with: 0, where: z .< 0) }
    @inline(__always) static func gradient(_ z: Float, _ dy: Float) -> Float { z > 0 ? dy : 0 }
    @inline(__always) static func gradient(_ z: SIMD16<Float>, _ dy: SIMD16<Float>) -> SIMD16<Float> {
        SIMD16(repeating: 0).replacing(with: dy, where: z .> 0)
    }
}

/// ReLU6; its gradient passes where 0 < z < 6 (⇔ 0 < y < 6).
enum ReLU6Activation: PointwiseActivation {
    static var cheap: Bool { true }
    @inline(__always) static func apply(_ z: Float) -> Float { min(max(z, 0), 6) }
    @inline(__always) static func apply(_ z: SIMD16<Float>) -> SIMD16<Float> {
        z.replacing(with: 0, where: z .< 0).replacing(with: 6, where: z .> 6)
    }
    @inline(__always) static func gradient(_ z: Float, _ dy: Float) -> Float { z > 0 && z < 6 ? dy : 0 }
    @inline(__always) static func gradient(_ z: SIMD16<Float>, _ dy: SIMD16<Float>) -> SIMD16<Float> {
        SIMD16(repeating: 0).replacing(with: dy, where: (z .> 0) .& (z .< 6))
    }
}

/// SiLU: z·σ(z); gradient σ(z)·(1 + z·(1 − σ(z)))·dy, with the vectorised `Vec.logistic` (the
/// scalar forms run the same vector code, so every element gets the same arithmetic). The
/// stand-alone `SiLU` layer uses these too. Backward computes act'(z)·dy once and keeps it in
/// dx between the BatchNorm's two passes rather than evaluating the exponential twice.
enum SiLUActivation: PointwiseActivation {
    static var cheap: Bool { false }
    @inline(__always) static func apply(_ z: Float) -> Float { apply(SIMD16(repeating: z))[0] }
    @inline(__always) static func apply(_ z: SIMD16<Float>) -> SIMD16<Float> { z * Vec.logistic(z) }
    @inline(__always) static func gradient(_ z: Float, _ dy: Float) -> Float {
        gradient(SIMD16(repeating: z), SIMD16(repeating: dy))[0]
    }
    @inline(__always) static func gradient(_ z: SIMD16<Float>, _ dy: SIMD16<Float>) -> SIMD16<Float> {
        let s = Vec.logistic(z)
        return dy * s * (1 + z * (1 - s))
    }
}
