/// Global average pooling: x: [batch, C, H, W] → y: [batch, C, 1, 1] (mean over H×W).
public final class GlobalAvgPool: Layer {
    public let kind = "globalavgpool"
    private var input = FeatureShape(features: 0)
    public init() {}
    public func configure(input: FeatureShape) throws -> FeatureShape {
        self.input = input
        return FeatureShape(features: input.channels)
    }
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        let hw = input.plane, inv = 1 / Float(hw)
        for p in 0..<(batch * input.channels) { y[p] = Vec.sum(x + p * hw, hw) * inv }
    }
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        guard let dx else { return }
        let hw = input.plane, inv = 1 / Float(hw)
        for p in 0..<(batch * input.channels) { (dx + p * hw).update(repeating: dy[p] * inv, count: hw) }
    }
}
