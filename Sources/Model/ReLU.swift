/// y = max(x, 0), elementwise; any shape.
public final class ReLU: Layer {
    public let kind = "relu"
    private var count = 0
    /// Computed by the BatchNorm before it (see `AbsorbableActivation`): the layer is the identity.
    public internal(set) var absorbed = false
    public init() {}
    public func configure(input: FeatureShape) throws -> FeatureShape { count = input.count; return input }
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        if absorbed { return passThrough(x, y, batch * count) }
        Vec.relu(x, y, batch * count)
    }
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        guard let dx else { return }
        if absorbed { return passThrough(dy, dx, batch * count) }
        Vec.reluBackward(y, dy, dx, batch * count)
    }
}
