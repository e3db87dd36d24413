/// Squeeze-and-excitation (torchvision.ops.SqueezeExcitation): a per-channel gate
///
///     s = σ(fc2(act(fc1(avgpool(x)))))      fc1: 1×1 conv C → S, fc2: 1×1 conv S → C (with biases)
///     y[n, c, h, w] = x[n, c, h, w] · s[n, c]
///
/// Tensors "fc1.weight" [S, C, 1, 1], "fc1.bias" [S], "fc2.weight" [C, S, 1, 1], "fc2.bias" [C],
/// as in torchvision. EfficientNet uses act = SiLU and S = max(1, block input channels / 4).
/// x, y: [batch, C, H, W], planar or blocked16 (the gate s, [batch, C, 1, 1], is the same memory
/// in both layouts, so only the scaling y = x·s and its backward index differently).
public final class SqueezeExcitation: CompositeLayer {
    public let kind = "squeeze_excitation"
    public let channels: Int, squeezeChannels: Int
    /// avgpool → fc1 → activation → fc2 → scale_activation: x ↦ s, [batch, C, 1, 1].
    let gate: Sequential
    private var input = FeatureShape(features: 0)
    /// [maxBatch, C] the gate s and its gradient; [maxBatch, C, H, W] the gate path's input gradient.
    private var gateOut: FloatBuffer?, dGate: FloatBuffer?, dxGate: FloatBuffer?
    /// The layout of x, y (negotiated by the network; planar by default).
    public private(set) var layout = ActivationLayout.planar

    /// - Parameter kaimingInit: initialise fc1/fc2 as torchvision's EfficientNet does (weights
    ///   Kaiming-normal fan-out, biases 0) instead of PyTorch's Conv2d default.
    public init(channels: Int, squeezeChannels: Int, activation: Layer = SiLU(), kaimingInit: Bool = false,
                backend: ConvolutionBackend = ConvolutionBackends.portable) {
        self.channels = channels; self.squeezeChannels = squeezeChannels
        let biasInit: ParameterSpec.Initializer? = kaimingInit ? .constant(0) : nil
        gate = Sequential([
            NamedLayer("avgpool", GlobalAvgPool()),
            NamedLayer("fc1", Conv2d(outChannels: squeezeChannels, kernel: 1,
                                     weightInit: kaimingInit ? Architectures.kaimingFanOut(squeezeChannels, 1) : nil,
                                     biasInit: biasInit, backend: backend)),
            NamedLayer("activation", activation),
            NamedLayer("fc2", Conv2d(outChannels: channels, kernel: 1,
                                     weightInit: kaimingInit ? Architectures.kaimingFanOut(channels, 1) : nil,
                                     biasInit: biasInit, backend: backend)),
            NamedLayer("scale_activation", Sigmoid()),
        ])
    }

    public var sublayers: [NamedLayer] { gate.sublayers }

    public func configure(input: FeatureShape) throws -> FeatureShape {
        guard input.channels == channels else {
            throw ModelError.invalidShape(layer: kind, input: input, reason: "expects \(channels) channels")
        }
        self.input = input
        _ = try gate.configure(input: input)
        return input
    }

    public var parameterSpecs: [ParameterSpec] { gate.parameterSpecs }
    public var stateSpecs: [StateSpec] { gate.stateSpecs }
    public func bind(_ binding: ParameterBinding) { gate.bind(binding) }

    public func prepare(maxBatch: Int) {
        gate.prepare(maxBatch: maxBatch)
        gateOut = FloatBuffer(count: maxBatch * channels)
        dGate = FloatBuffer(count: maxBatch * channels)
        dxGate = FloatBuffer(count: maxBatch * input.count)
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        let s = gateOut!.pointer, hw = input.plane
        gate.forward(x, s, batch: batch, mode: mode, context: context)
        if layout == .blocked16 {
            let B = ActivationLayout.block
            // Sample n's channel block cb: hw vectors of 16 channels, scaled by s[n, 16cb…16cb+15].
            for p in 0..<(batch * channels / B) {
                let scale = Vec.load(s + p * B), o = p * hw * B
                for i in 0..<hw { Vec.store(Vec.load(x + o + i * B) * scale, y + o + i * B) }
            }
            return
        }
        for p in 0..<(batch * channels) { Vec.affine(x + p * hw, y + p * hw, hw, scale: s[p], shift: 0) }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        let s = gateOut!.pointer, ds = dGate!.pointer, hw = input.plane, B = ActivationLayout.block
        let blocked = layout == .blocked16
        // ds[n, c] = Σ_hw dy · x
        if blocked {
            for p in 0..<(batch * channels / B) {
                let o = p * hw * B
                var acc = SIMD16<Float>()
                for i in 0..<hw { acc.addProduct(Vec.load(dy + o + i * B), Vec.load(x + o + i * B)) }
                Vec.store(acc, ds + p * B)
            }
        } else {
            for p in 0..<(batch * channels) { ds[p] = Vec.sumAndDotCentered(dy + p * hw, x + p * hw, hw, center: 0).1 }
        }
        guard let dx else {
            gate.backward(x: x, y: s, dy: ds, dx: nil, batch: batch, mode: mode)
            return
        }
        let t = dxGate!.pointer
        gate.backward(x: x, y: s, dy: ds, dx: t, batch: batch, mode: mode)
        // dx = dy · s + (the gate path's gradient, in x's layout)
        if blocked {
            for p in 0..<(batch * channels / B) {
                let scale = Vec.load(s + p * B), o = p * hw * B
                for i in 0..<hw {
                    let j = o + i * B
                    Vec.store(Vec.load(dy + j) * scale + Vec.load(t + j), dx + j)
                }
            }
            return
        }
        for p in 0..<(batch * channels) {
            let scale = s[p]
            for i in (p * hw)..<((p + 1) * hw) { dx[i] = dy[i] * scale + t[i] }
        }
    }
}

/// x and y in the layout offered, the gate reading it (its global pool reads either layout).
extension SqueezeExcitation: LayoutNegotiating {
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) {
        if allowBlocked && offered == .blocked16 && gate.negotiate(offered: offered, allowBlocked: true).input == offered {
            layout = .blocked16
        } else {
            _ = gate.negotiate(offered: .planar, allowBlocked: allowBlocked)
            layout = .planar
        }
        return (layout, layout)
    }
}
