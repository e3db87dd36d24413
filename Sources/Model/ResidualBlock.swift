import Support

/// A residual connection: y = act(drop(body(x)) + shortcut(x)), where the shortcut is the
/// identity when nil and act is ReLU or nothing.
///
/// This one layer covers torchvision's residual blocks:
/// - ResNet `BasicBlock` / `Bottleneck`: body conv1 bn1 relu conv2 bn2 (…), shortcut
///   `downsample.0` (1×1 conv) `downsample.1` (BatchNorm) when the shape changes, ReLU after the add;
/// - MobileNetV2 `InvertedResidual` and EfficientNet `MBConv` when stride 1 and in = out:
///   identity shortcut, nothing after the add.
///
/// `dropPath` is stochastic depth ("row" mode, EfficientNet): in `.train` mode each sample's body
/// output is dropped with that probability and otherwise scaled by 1/(1 − p); eval is the
/// identity. The mask is drawn from (seed, step, sample id, salt) like `Dropout`'s.
///
/// Tensor names are the body's followed by the shortcut's (no extra prefix), so a ResNet block
/// named "layer1.0" owns "layer1.0.conv1.weight", …, "layer1.0.downsample.1.running_var".
/// x: [batch, C, H, W] → y: [batch, body output].
public final class ResidualBlock: CompositeLayer {
    public let kind = "residual"
    public let body: Sequential
    public let shortcut: Sequential?
    public let reluAfterAdd: Bool
    public let dropPath: Float
    let salt: UInt64
    private var input = FeatureShape(features: 0), output = FeatureShape(features: 0)
    /// [maxBatch, output] body(x), shortcut(x) and the gradient at the sum.
    private var bodyOut: FloatBuffer?, shortcutOut: FloatBuffer?, dSum: FloatBuffer?
    /// [maxBatch, input] the input gradient of whichever branch is added second
    /// (only when there is a shortcut layer or stochastic depth).
    private var dxTemp: FloatBuffer?
    /// [maxBatch] per-sample stochastic-depth factor of the last training forward (0 or 1/(1 − p)).
    private var keep: FloatBuffer?
    private var lastDropped = false

    public init(body: Sequential, shortcut: Sequential? = nil, reluAfterAdd: Bool, dropPath: Float = 0, salt: UInt64 = 0) {
        self.body = body; self.shortcut = shortcut; self.reluAfterAdd = reluAfterAdd
        self.dropPath = dropPath; self.salt = salt
    }

    public var sublayers: [NamedLayer] { body.sublayers + (shortcut?.sublayers ?? []) }

    public func configure(input: FeatureShape) throws -> FeatureShape {
        guard dropPath >= 0, dropPath < 1 else {
            throw ModelError.invalidOption("stochastic depth probability must be in [0, 1), got \(dropPath)")
        }
        let out = try body.configure(input: input)
        let other = try shortcut?.configure(input: input) ?? input
        guard other == out else {
            throw ModelError.invalidShape(layer: kind, input: input,
                                          reason: "body gives \(out) but the shortcut gives \(other)")
        }
        self.input = input; output = out
        return out
    }

    public var parameterSpecs: [ParameterSpec] { body.parameterSpecs + (shortcut?.parameterSpecs ?? []) }
    public var stateSpecs: [StateSpec] { body.stateSpecs + (shortcut?.stateSpecs ?? []) }

    public func bind(_ b: ParameterBinding) {
        let np = body.parameterSpecs.count, ns = body.stateSpecs.count
        body.bind(b.slice(parameters: 0..<np, state: 0..<ns))
        shortcut?.bind(b.slice(parameters: np..<b.parameters.count, state: ns..<b.state.count))
    }

    public func prepare(maxBatch: Int) {
        body.prepare(maxBatch: maxBatch)
        shortcut?.prepare(maxBatch: maxBatch)
        bodyOut = FloatBuffer(count: maxBatch * output.count)
        dSum = FloatBuffer(count: maxBatch * output.count)
        shortcutOut = shortcut == nil ? nil : FloatBuffer(count: maxBatch * output.count)
        dxTemp = shortcut == nil && dropPath == 0 ? nil : FloatBuffer(count: maxBatch * input.count)
        keep = FloatBuffer(count: maxBatch)
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        let n = output.count, b = bodyOut!.pointer
        body.forward(x, b, batch: batch, mode: mode, context: context)
        var other = x
        if let shortcut {
            shortcut.forward(x, shortcutOut!.pointer, batch: batch, mode: mode, context: context)
            other = UnsafePointer(shortcutOut!.pointer)
        }
        lastDropped = mode == .train && dropPath > 0
        if lastDropped {
            let k = keep!.pointer, scale = 1 / (1 - dropPath)
            for s in 0..<batch {
                let id = UInt64(context.sampleIDs.map { $0[s] } ?? s)
                var rng = RandomSource(seed: context.seed ^ (salt &* 0x9E37_79B9_7F4A_7C15), stream: (UInt64(context.step) << 32) ^ id)
                k[s] = rng.nextFloat() < dropPath ? 0 : scale
                for i in 0..<n { y[s * n + i] = k[s] * b[s * n + i] + other[s * n + i] }
            }
            if reluAfterAdd { Vec.relu(y, y, batch * n) }
        } else {
            Vec.add(b, other, y, batch * n, relu: reluAfterAdd)
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        let n = output.count, count = batch * input.count
        // g: the gradient at the sum (the shortcut's dy); the body's dy is g scaled by each
        // sample's stochastic-depth factor.
        var g = dy
        if reluAfterAdd {
            Vec.reluBackward(y, dy, dSum!.pointer, batch * n)
            g = UnsafePointer(dSum!.pointer)
        }
        if !lastDropped {
            body.backward(x: x, y: bodyOut!.pointer, dy: g, dx: dx, batch: batch, mode: mode)
            guard let shortcut else {
                if let dx { for i in 0..<count { dx[i] += g[i] } }
                return
            }
            let t = dx == nil ? nil : dxTemp!.pointer
            shortcut.backward(x: x, y: shortcutOut!.pointer, dy: g, dx: t, batch: batch, mode: mode)
            if let dx, let t { for i in 0..<count { dx[i] += t[i] } }
            return
        }
        // Stochastic depth: the shortcut first (it needs g unscaled, and g may live in dSum),
        // then the body's dy = k ⊙ g in dSum, its dx added through the scratch buffer.
        if let shortcut {
            shortcut.backward(x: x, y: shortcutOut!.pointer, dy: g, dx: dx, batch: batch, mode: mode)
        } else if let dx {
            dx.update(from: g, count: count)
        }
        let d = dSum!.pointer, k = keep!.pointer
        for s in 0..<batch { for i in 0..<n { d[s * n + i] = k[s] * g[s * n + i] } }
        let t = dx == nil ? nil : dxTemp!.pointer
        body.backward(x: x, y: bodyOut!.pointer, dy: d, dx: t, batch: batch, mode: mode)
        if let dx, let t { for i in 0..<count { dx[i] += t[i] } }
    }
}

/// The add, ReLU and stochastic-depth scaling are per sample and elementwise, so the block works
/// on any layout its body and shortcut agree on.
extension ResidualBlock: LayoutNegotiating {
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) {
        let b = body.negotiate(offered: offered, allowBlocked: allowBlocked)
        let s = shortcut?.negotiate(offered: offered, allowBlocked: allowBlocked) ?? (input: offered, output: offered)
        if b.input == offered && s.input == offered && b.output == s.output { return b }
        _ = shortcut?.negotiate(offered: .planar, allowBlocked: false)
        return body.negotiate(offered: .planar, allowBlocked: false)
    }
}
