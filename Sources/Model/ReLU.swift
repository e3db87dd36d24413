/// y = max(x, 0), elementwise; any shape.
public final class ReLU: Layer {
    public let kind = "relu"
    private var count = 0
    public init() {}
    public func configure(input: FeatureShape) throws -> FeatureShape { count = input.count; return input }
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        Vec.relu(x, y, batch * count)
    }
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        if let dx { Vec.reluBackward(y, dy, dx, batch * count) }
    }
}
