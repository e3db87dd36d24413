/// torchvision's MobileNetV2 (width 1.0) and EfficientNet-B0.
///
/// Both are stacks of inverted residuals: a 1×1 expansion (skipped at expansion 1), a depthwise
/// k×k convolution (a `Conv2d` with groups = channels, through the same backend seam), in
/// EfficientNet a squeeze-and-excitation gate, and a linear 1×1 projection; the input is added
/// back when stride = 1 and the channel count is unchanged. Each convolution is followed by
/// BatchNorm and (except the projection) ReLU6 / SiLU, torchvision's `Conv2dNormActivation`
/// ("N.0" conv, "N.1" BatchNorm, "N.2" activation).
///
/// Initialisation as torchvision: convolutions Kaiming-normal fan-out, BatchNorm γ = 1, β = 0;
/// MobileNetV2's linear layers N(0, 0.01), EfficientNet's U(±1/sqrt(classes)), biases 0.
extension Architectures {
    /// Conv k×k/stride (padding (k − 1)/2, no bias) → BatchNorm → activation, named
    /// "\(prefix).0", "\(prefix).1", "\(prefix).2".
    static func convNormActivation(_ prefix: String, out: Int, kernel: Int, stride: Int = 1, groups: Int = 1,
                                   activation: Layer?, _ backend: ConvolutionBackend) -> [NamedLayer] {
        var layers = [NamedLayer("\(prefix).0", Conv2d(outChannels: out, kernel: kernel, stride: stride, padding: (kernel - 1) / 2,
                                                       groups: groups, bias: false, weightInit: kaimingFanOut(out, kernel),
                                                       backend: backend)),
                      NamedLayer("\(prefix).1", BatchNorm2d())]
        if let activation { layers.append(NamedLayer("\(prefix).2", activation)) }
        return layers
    }

    /// MobileNetV2: features.0 stem conv 3×3/2 (→32); features.1–17 inverted residuals
    /// (expansion t, channels c, repeats n, stride s of the first):
    /// (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1);
    /// features.18 conv 1×1 (→1280); global average pool; classifier.0 dropout, classifier.1 linear.
    /// 3,504,872 parameters for 1000 classes.
    static func mobilenetV2(_ spec: ModelSpec, _ backend: ConvolutionBackend) -> [NamedLayer] {
        let settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        var layers = convNormActivation("features.0", out: 32, kernel: 3, stride: 2, activation: ReLU6(), backend)
        var input = 32, index = 1
        for (t, c, n, s) in settings {
            for i in 0..<n {
                layers.append(NamedLayer("features.\(index)",
                                         invertedResidual(input: input, output: c, stride: i == 0 ? s : 1, expansion: t, backend)))
                input = c; index += 1
            }
        }
        layers += convNormActivation("features.\(index)", out: 1280, kernel: 1, activation: ReLU6(), backend)
        layers.append(NamedLayer("avgpool", GlobalAvgPool()))
        return layers + classifierHead(spec, style: .classifier, weightInit: .normal(std: 0.01), biasInit: .constant(0))
    }

    /// torchvision's `InvertedResidual`: "conv.0" expansion 1×1 (if t ≠ 1), then depthwise 3×3,
    /// then "conv.N" projection 1×1 and "conv.N+1" BatchNorm.
    static func invertedResidual(input: Int, output: Int, stride: Int, expansion t: Int, _ backend: ConvolutionBackend) -> Layer {
        let hidden = input * t
        var body: [NamedLayer] = [], i = 0
        if t != 1 {
            body += convNormActivation("conv.\(i)", out: hidden, kernel: 1, activation: ReLU6(), backend); i += 1
        }
        body += convNormActivation("conv.\(i)", out: hidden, kernel: 3, stride: stride, groups: hidden, activation: ReLU6(), backend)
        body.append(NamedLayer("conv.\(i + 1)", Conv2d(outChannels: output, kernel: 1, bias: false,
                                                       weightInit: kaimingFanOut(output, 1), backend: backend)))
        body.append(NamedLayer("conv.\(i + 2)", BatchNorm2d()))
        if stride == 1 && input == output { return ResidualBlock(body: Sequential(body), reluAfterAdd: false) }
        return Sequential(body)
    }

    /// EfficientNet-B0: features.0 stem conv 3×3/2 (→32, SiLU); features.1–7 stages of MBConv
    /// blocks "features.S.J" (expansion t, kernel k, stride s of the first, in → out, repeats n):
    /// (1,3,1,32,16,1) (6,3,2,16,24,2) (6,5,2,24,40,2) (6,3,2,40,80,3) (6,5,1,80,112,3)
    /// (6,5,2,112,192,4) (6,3,1,192,320,1); features.8 conv 1×1 (→1280, SiLU); global average
    /// pool; classifier.0 dropout, classifier.1 linear. 5,288,548 parameters for 1000 classes.
    ///
    /// Stochastic depth as torchvision: block b of 16 drops its residual branch with probability
    /// `spec.stochasticDepth` (0.2) · b / 16 in training, only in blocks with an identity shortcut.
    static func efficientNetB0(_ spec: ModelSpec, _ backend: ConvolutionBackend) throws -> [NamedLayer] {
        let settings = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                        (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
        let dropPath = spec.stochasticDepth ?? 0.2
        guard dropPath >= 0, dropPath < 1 else {
            throw ModelError.invalidOption("stochastic depth probability must be in [0, 1), got \(dropPath)")
        }
        let total = settings.map(\.5).reduce(0, +)
        var layers = convNormActivation("features.0", out: 32, kernel: 3, stride: 2, activation: SiLU(), backend)
        var block = 0
        for (stage, (t, k, s, input, output, n)) in settings.enumerated() {
            for j in 0..<n {
                let p = dropPath * Float(block) / Float(total)
                layers.append(NamedLayer("features.\(stage + 1).\(j)",
                                         mbConv(input: j == 0 ? input : output, output: output, kernel: k, stride: j == 0 ? s : 1,
                                                expansion: t, dropPath: p, salt: UInt64(block + 1), backend)))
                block += 1
            }
        }
        layers += convNormActivation("features.\(settings.count + 1)", out: 1280, kernel: 1, activation: SiLU(), backend)
        layers.append(NamedLayer("avgpool", GlobalAvgPool()))
        let bound = 1 / Float(spec.classes).squareRoot()
        return layers + classifierHead(spec, style: .classifier, weightInit: .uniform(bound: bound), biasInit: .constant(0))
    }

    /// torchvision's `MBConv`: "block.0" expansion 1×1 (if t ≠ 1), depthwise k×k, squeeze-and-
    /// excitation (squeeze = max(1, input/4), SiLU), projection 1×1 + BatchNorm (no activation).
    static func mbConv(input: Int, output: Int, kernel: Int, stride: Int, expansion t: Int, dropPath: Float, salt: UInt64,
                       _ backend: ConvolutionBackend) -> Layer {
        let expanded = input * t
        var body: [NamedLayer] = [], i = 0
        if expanded != input {
            body += convNormActivation("block.\(i)", out: expanded, kernel: 1, activation: SiLU(), backend); i += 1
        }
        body += convNormActivation("block.\(i)", out: expanded, kernel: kernel, stride: stride, groups: expanded,
                                   activation: SiLU(), backend)
        body.append(NamedLayer("block.\(i + 1)", SqueezeExcitation(channels: expanded, squeezeChannels: max(1, input / 4),
                                                                   activation: SiLU(), kaimingInit: true, backend: backend)))
        body += convNormActivation("block.\(i + 2)", out: output, kernel: 1, activation: nil, backend)
        if stride == 1 && input == output {
            return ResidualBlock(body: Sequential(body), reluAfterAdd: false, dropPath: dropPath, salt: salt)
        }
        return Sequential(body)
    }
}
