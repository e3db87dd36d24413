/// 2-D convolution, PyTorch semantics: weight [out, in/groups, k, k] (OIHW, kept in the
/// order the backend chooses: see `ConvolutionBackend.weightLayout`), bias [out].
///
/// x: [batch, in, H, W] → y: [batch, out, (H + 2p − k)/s + 1, (W + 2p − k)/s + 1].
/// With `groups` = g, output channels [i·out/g, (i+1)·out/g) see only input channels
/// [i·in/g, (i+1)·in/g); `groups` = in = out is a depthwise convolution.
/// The arithmetic is delegated to a `ConvolutionKernel` from the chosen backend.
///
///     Conv2d(outChannels: 64, kernel: 3, padding: 1, bias: false)            // dense 3×3
///     Conv2d(outChannels: 96, kernel: 3, stride: 2, padding: 1, groups: 96)  // depthwise
public final class Conv2d: FreezableLayer {
    public let kind = "conv2d"
    public let outChannels: Int, kernel: Int, stride: Int, padding: Int, groups: Int, hasBias: Bool
    let backend: ConvolutionBackend
    /// Initializer overrides (nil: PyTorch's default U(±1/sqrt(fan_in)) for both).
    let weightInit: ParameterSpec.Initializer?, biasInit: ParameterSpec.Initializer?
    public private(set) var geometry: ConvGeometry?
    /// Set by `Network.applyFineTuning`: no weight or bias gradients are computed.
    public internal(set) var frozen = false
    private var impl: ConvolutionKernel?
    /// The kernel `prepare` made and the bound weight gradient (for tests).
    var convolutionKernel: ConvolutionKernel? { impl }
    var weightGradient: UnsafeMutablePointer<Float>? { dWeight }
    /// The order the backend keeps the weights in (see `ParameterLayout`), asked once per geometry.
    private var askedWeightLayout: ParameterLayout?? = nil
    private var weightLayout: ParameterLayout? {
        if let known = askedWeightLayout { return known }
        let layout = backend.weightLayout(geometry!)
        askedWeightLayout = .some(layout)
        return layout
    }
    /// The activation layouts read and written (negotiated by the network; planar by default).
    public private(set) var layouts: (input: ActivationLayout, output: ActivationLayout) = (.planar, .planar)
    private var weight: UnsafeMutablePointer<Float>?, bias: UnsafeMutablePointer<Float>?
    private var dWeight: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?
    /// The store's gradient epoch and the value the last backward saw (another value: the
    /// gradients were zeroed since, and the kernel may write them instead of adding).
    private var gradientEpoch: UnsafePointer<UInt64>?, seenEpoch: UInt64 = 0

    public init(outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0, groups: Int = 1, bias: Bool = true,
                weightInit: ParameterSpec.Initializer? = nil, biasInit: ParameterSpec.Initializer? = nil,
                backend: ConvolutionBackend = ConvolutionBackends.portable) {
        self.outChannels = outChannels; self.kernel = kernel; self.stride = stride
        self.padding = padding; self.groups = groups; self.hasBias = bias; self.backend = backend
        self.weightInit = weightInit; self.biasInit = biasInit
    }

    public func configure(input: FeatureShape) throws -> FeatureShape {
        guard kernel >= 1, stride >= 1, padding >= 0, outChannels >= 1, groups >= 1 else {
            throw ModelError.invalidShape(layer: kind, input: input, reason: "kernel, stride, groups and channels must be positive")
        }
        guard input.channels % groups == 0, outChannels % groups == 0 else {
            throw ModelError.invalidShape(layer: kind, input: input,
                                          reason: "\(groups) groups do not divide \(input.channels) input and \(outChannels) output channels")
        }
        guard input.height + 2 * padding >= kernel, input.width + 2 * padding >= kernel else {
            throw ModelError.invalidShape(layer: kind, input: input, reason: "kernel \(kernel) larger than the padded input")
        }
        let g = ConvGeometry(input: input, outChannels: outChannels, kernel: kernel, stride: stride, padding: padding,
                             groups: groups, bias: hasBias)
        geometry = g
        askedWeightLayout = nil
        return g.output
    }

    public var parameterSpecs: [ParameterSpec] {
        guard let g = geometry else { return [] }
        let bound = 1 / Float(g.patch).squareRoot()
        var specs = [ParameterSpec(name: "weight", count: g.weightCount, initializer: weightInit ?? .uniform(bound: bound),
                                   decays: true, shape: g.weightShape, layout: weightLayout)]
        if hasBias {
            specs.append(ParameterSpec(name: "bias", count: outChannels, initializer: biasInit ?? .uniform(bound: bound), decays: false))
        }
        return specs
    }

    public func bind(_ b: ParameterBinding) {
        weight = b.parameters[0]; dWeight = b.gradients[0]
        if hasBias { bias = b.parameters[1]; dBias = b.gradients[1] }
        gradientEpoch = b.gradientEpoch
        seenEpoch = b.gradientEpoch?.pointee ?? 0
    }

    public func prepare(maxBatch: Int) {
        impl = backend.makeKernel(geometry!, maxBatch: maxBatch, input: layouts.input, output: layouts.output,
                                  weights: weightLayout)
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        impl!.forward(x: x, weight: weight!, bias: bias.map { UnsafePointer($0) }, y: y, batch: batch)
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        if !frozen {
            var zero = false
            if let epoch = gradientEpoch?.pointee { zero = epoch != seenEpoch; seenEpoch = epoch }
            impl!.backwardWeights(x: x, dy: dy, dWeight: dWeight!, dBias: dBias, batch: batch, dWeightIsZero: zero)
        }
        if let dx { impl!.backwardData(dy: dy, weight: weight!, dx: dx, batch: batch) }
    }
}

extension Conv2d: LayoutNegotiating {
    /// The backend decides (oneDNN: its blocked layout where 16 divides the channels).
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) {
        layouts = allowBlocked ? backend.layouts(geometry!, offered: offered) : (.planar, .planar)
        return layouts
    }
}
