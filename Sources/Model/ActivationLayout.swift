/// How one sample's activation is laid out in memory: a property the network negotiates with
/// its layers, not an assumption inside them.
///
/// - `planar`: NCHW, `channels` planes of `height × width` (what every layer understands).
/// - `blocked16`: oneDNN's nChw16c, [channels/16][height][width][16]: 16 channels side by side,
///   what its AVX-512 convolutions read and write natively. Used only when 16 divides the
///   channel count, so it holds exactly `count` elements (no padding) and a [C, 1, 1] activation
///   is the same memory in both layouts.
public enum ActivationLayout: String, Sendable, Equatable {
    case planar, blocked16

    static let block = 16

    /// The layout `shape` can have: `blocked16` only for a multiple of 16 channels.
    static func blocked(if possible: Bool, _ shape: FeatureShape) -> ActivationLayout {
        possible && shape.channels % block == 0 ? .blocked16 : .planar
    }
}

/// A layer that can work on more than the planar layout.
///
/// `Network` offers each layer the layout its producer writes; the layer answers with the
/// layout it reads (usually the offered one) and the one it writes. Where a layer reads a
/// different layout than offered, the network converts (x forward, dx backward). Layers that do
/// not conform read and write `planar`. Gradients travel in the layout of their activation.
///
/// Composite layers (Sequential, ResidualBlock) negotiate their sub-layers the same way and
/// need them to agree without conversions; when they cannot, they ask again with
/// `allowBlocked` false, which every layer answers with planar in and out.
public protocol LayoutNegotiating: Layer {
    /// Called once after `configure`, before `prepare` (again if the first answer did not fit).
    func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout)
}

/// Conversions between the layouts of a [batch, shape] activation.
enum LayoutConversion {
    static func convert(_ x: UnsafePointer<Float>, from: ActivationLayout, to: ActivationLayout,
                        _ y: UnsafeMutablePointer<Float>, shape: FeatureShape, batch: Int) {
        let n = batch * shape.count
        if from == to || shape.plane == 1 { y.update(from: x, count: n); return }
        let B = ActivationLayout.block, HW = shape.plane, CB = shape.channels / B
        for s in 0..<batch {
            let xs = x + s * shape.count, ys = y + s * shape.count
            for cb in 0..<CB {
                for l in 0..<B {
                    let planar = (cb * B + l) * HW, blocked = cb * HW * B + l
                    if from == .planar {
                        for p in 0..<HW { ys[blocked + p * B] = xs[planar + p] }
                    } else {
                        for p in 0..<HW { ys[planar + p] = xs[blocked + p * B] }
                    }
                }
            }
        }
    }
}

// MARK: Layers that are indifferent to the layout (elementwise)

extension ReLU: LayoutNegotiating {
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) { (offered, offered) }
}
extension ReLU6: LayoutNegotiating {
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) { (offered, offered) }
}
extension SiLU: LayoutNegotiating {
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) { (offered, offered) }
}
extension Sigmoid: LayoutNegotiating {
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) { (offered, offered) }
}
