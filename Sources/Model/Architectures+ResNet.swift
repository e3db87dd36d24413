/// torchvision's ResNets (v1.5: a bottleneck's stride sits on its 3×3 convolution).
///
///     conv1 7×7/2 (C → w0), bn1, relu, maxpool 3×3/2 pad 1
///     layer1 … layer4: blocks of widths w0…w3 (64, 128, 256, 512), stride 2 at the first block of
///                      layers 2–4, a `downsample` (1×1 conv/s + BatchNorm) where the shape changes
///     avgpool (global), fc
///
/// BasicBlock (resnet18/34): conv1 3×3/s bn1 relu conv2 3×3 bn2, + shortcut, relu.
/// Bottleneck (resnet50):    conv1 1×1 bn1 relu conv2 3×3/s bn2 relu conv3 1×1 (×4) bn3, + shortcut, relu.
///
/// Initialisation as torchvision: convolutions Kaiming-normal (fan-out, ReLU gain), BatchNorm
/// γ = 1, β = 0, fc PyTorch's default. `spec.widths` (four stage widths) scales the network down
/// for tests; the default gives torchvision's exact shapes.
extension Architectures {
    /// N(0, 2 / fan_out) for a convolution weight [out, in/groups, k, k] (torchvision's
    /// `kaiming_normal_(mode="fan_out", nonlinearity="relu")`).
    static func kaimingFanOut(_ out: Int, _ kernel: Int) -> ParameterSpec.Initializer {
        .normal(std: (2 / Float(out * kernel * kernel)).squareRoot())
    }

    static func resnet(_ spec: ModelSpec, _ backend: ConvolutionBackend, blocks: [Int], bottleneck: Bool) throws -> [NamedLayer] {
        let widths = spec.widths ?? [64, 128, 256, 512]
        guard widths.count == blocks.count, widths.allSatisfy({ $0 >= 1 }) else {
            throw ModelError.invalidOption("\(spec.architecture) needs \(blocks.count) positive stage widths (got \(widths))")
        }
        func conv(_ out: Int, _ k: Int, stride: Int = 1) -> Conv2d {
            Conv2d(outChannels: out, kernel: k, stride: stride, padding: (k - 1) / 2, bias: false,
                   weightInit: kaimingFanOut(out, k), backend: backend)
        }
        let expansion = bottleneck ? 4 : 1
        var layers = [NamedLayer("conv1", Conv2d(outChannels: widths[0], kernel: 7, stride: 2, padding: 3, bias: false,
                                                 weightInit: kaimingFanOut(widths[0], 7), backend: backend)),
                      NamedLayer("bn1", BatchNorm2d()), NamedLayer("relu", ReLU()),
                      NamedLayer("maxpool", MaxPool2d(kernel: 3, stride: 2, padding: 1))]
        var inplanes = widths[0]
        for (stage, (planes, count)) in zip(widths, blocks).enumerated() {
            for b in 0..<count {
                let stride = stage > 0 && b == 0 ? 2 : 1
                let out = planes * expansion
                var body: [NamedLayer]
                if bottleneck {
                    body = [NamedLayer("conv1", conv(planes, 1)), NamedLayer("bn1", BatchNorm2d()), NamedLayer("relu1", ReLU()),
                            NamedLayer("conv2", conv(planes, 3, stride: stride)), NamedLayer("bn2", BatchNorm2d()),
                            NamedLayer("relu2", ReLU()),
                            NamedLayer("conv3", conv(out, 1)), NamedLayer("bn3", BatchNorm2d())]
                } else {
                    body = [NamedLayer("conv1", conv(planes, 3, stride: stride)), NamedLayer("bn1", BatchNorm2d()),
                            NamedLayer("relu", ReLU()),
                            NamedLayer("conv2", conv(planes, 3)), NamedLayer("bn2", BatchNorm2d())]
                }
                let downsample = stride != 1 || inplanes != out
                    ? Sequential([NamedLayer("downsample.0", conv(out, 1, stride: stride)), NamedLayer("downsample.1", BatchNorm2d())])
                    : nil
                layers.append(NamedLayer("layer\(stage + 1).\(b)",
                                         ResidualBlock(body: Sequential(body), shortcut: downsample, reluAfterAdd: true)))
                inplanes = out
            }
        }
        layers.append(NamedLayer("avgpool", GlobalAvgPool()))
        return layers + classifierHead(spec, style: .fc)
    }
}
