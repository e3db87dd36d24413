/// Global average pooling: x: [batch, C, H, W] → y: [batch, C, 1, 1] (mean over H×W).
public final class GlobalAvgPool: Layer {
    public let kind = "globalavgpool"
    private var input = FeatureShape(features: 0)
    /// The input's layout (the output, [C, 1, 1], is the same memory in both).
    private var layout = ActivationLayout.planar
    public init() {}
    public func configure(input: FeatureShape) throws -> FeatureShape {
        self.input = input
        return FeatureShape(features: input.channels)
    }
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        let hw = input.plane, inv = 1 / Float(hw)
        if layout == .blocked16 {
            let B = ActivationLayout.block
            for p in 0..<(batch * input.channels / B) {
                let xp = x + p * hw * B
                var s = SIMD16<Float>()
                for i in 0..<hw { s += Vec.load(xp + i * B) }
                Vec.store(s * inv, y + p * B)
            }
            return
        }
        for p in 0..<(batch * input.channels) { y[p] = Vec.sum(x + p * hw, hw) * inv }
    }
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        guard let dx else { return }
        let hw = input.plane, inv = 1 / Float(hw)
        if layout == .blocked16 {
            let B = ActivationLayout.block
            for p in 0..<(batch * input.channels / B) {
                let g = Vec.load(dy + p * B) * inv, dxp = dx + p * hw * B
                for i in 0..<hw { Vec.store(g, dxp + i * B) }
            }
            return
        }
        for p in 0..<(batch * input.channels) { (dx + p * hw).update(repeating: dy[p] * inv, count: hw) }
    }
}

extension GlobalAvgPool: LayoutNegotiating {
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) {
        layout = offered
        return (offered, .planar)
    }
}
