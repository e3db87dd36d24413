import Foundation

/// y = min(max(x, 0), 6), elementwise; any shape (MobileNetV2's activation).
///
/// Backward passes the gradient where 0 < y < 6 (PyTorch's `hardtanh_backward` convention:
/// zero at the two kinks).
public final class ReLU6: Layer {
    public let kind = "relu6"
    private var count = 0
    /// Computed by the BatchNorm before it (see `AbsorbableActivation`): the layer is the identity.
    public internal(set) var absorbed = false
    public init() {}
    public func configure(input: FeatureShape) throws -> FeatureShape { count = input.count; return input }
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        if absorbed { return passThrough(x, y, batch * count) }
        for i in 0..<(batch * count) { y[i] = min(max(x[i], 0), 6) }
    }
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        guard let dx else { return }
        if absorbed { return passThrough(dy, dx, batch * count) }
        for i in 0..<(batch * count) { dx[i] = y[i] > 0 && y[i] < 6 ? dy[i] : 0 }
    }
}

/// y = x·σ(x) (SiLU, "swish"), elementwise; any shape (EfficientNet's activation).
///
/// Backward: dx = dy · σ(x)·(1 + x·(1 − σ(x))), from the saved input.
public final class SiLU: Layer {
    public let kind = "silu"
    private var count = 0
    /// Computed by the BatchNorm before it (see `AbsorbableActivation`): the layer is the identity.
    public internal(set) var absorbed = false
    public init() {}
    public func configure(input: FeatureShape) throws -> FeatureShape { count = input.count; return input }
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        if absorbed { return passThrough(x, y, batch * count) }
        Vec.map(x, y, batch * count, SiLUActivation.apply)
    }
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        guard let dx else { return }
        if absorbed { return passThrough(dy, dx, batch * count) }
        Vec.map(x, dy, dx, batch * count, SiLUActivation.gradient)
    }
}

/// y = σ(x) = 1 / (1 + e^−x), elementwise; any shape (squeeze-and-excitation's gate).
///
/// Backward: dx = dy · y·(1 − y), from the saved output.
public final class Sigmoid: Layer {
    public let kind = "sigmoid"
    private var count = 0
    public init() {}
    public func configure(input: FeatureShape) throws -> FeatureShape { count = input.count; return input }
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        Vec.map(x, y, batch * count, Vec.logistic)
    }
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        guard let dx else { return }
        for i in 0..<(batch * count) { dx[i] = dy[i] * y[i] * (1 - y[i]) }
    }
}
