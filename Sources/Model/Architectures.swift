/// What a network is: enough to rebuild it exactly (saved in every checkpoint).
public struct ModelSpec: Codable, Equatable, Sendable {
    /// Architecture name, e.g. "refcnn", "cnn-small".
    public var architecture: String
    /// Input channels (1 = gray, 3 = RGB).
    public var channels: Int
    /// Input height and width.
    public var imageSize: Int
    public var classes: Int
    /// With BatchNorm after each convolution (default) or without (conv bias only).
    public var batchNorm: Bool
    /// Channel widths of the stages (architectures that are configurable; nil = default).
    public var widths: [Int]?
    /// Dropout before the classifier (0 = none). torchvision's MobileNetV2 and EfficientNet-B0
    /// use 0.2 (their `classifier.0`); here it is what the spec says.
    public var dropout: Float
    /// Hidden widths of an optional MLP between the pooled features and the final linear layer:
    /// per width, Linear → BatchNorm1d → ReLU → Dropout(`headDropout`). nil or [] = none.
    public var head: [Int]?
    /// Dropout after each hidden layer of `head` (nil = `dropout`).
    public var headDropout: Float?
    /// Stochastic-depth probability of the last residual block (EfficientNet; nil = torchvision's
    /// 0.2, scaled linearly from 0 at the first block as torchvision does).
    public var stochasticDepth: Float?
    /// Image + metadata fusion (`MetadataFusion` after the global pooling) with the metadata
    /// encoding fitted on the training split; nil = image only.
    public var fusion: MetadataEncoding?

    public init(architecture: String, channels: Int, imageSize: Int, classes: Int, batchNorm: Bool = true,
                widths: [Int]? = nil, dropout: Float = 0, head: [Int]? = nil, headDropout: Float? = nil,
                stochasticDepth: Float? = nil) {
        self.architecture = architecture; self.channels = channels; self.imageSize = imageSize
        self.classes = classes; self.batchNorm = batchNorm; self.widths = widths; self.dropout = dropout
        self.head = head; self.headDropout = headDropout; self.stochasticDepth = stochasticDepth
    }
}

/// The model zoo: builds a `Network` from a `ModelSpec`.
///
/// The torchvision architectures (resnet18/34/50, mobilenetv2, efficientnet-b0) have torchvision's
/// layer shapes, parameter counts and state_dict names ("layer1.0.conv1.weight",
/// "features.1.0.block.1.fc1.bias", "classifier.1.weight", …) and end in global average pooling,
/// so they run at any input size from 32×32 up.
///
///     let net = try Architectures.build(ModelSpec(architecture: "resnet18", channels: 3, imageSize: 64, classes: 10))
public enum Architectures {
    public static let names = ["refcnn", "cnn-small", "resnet18", "resnet34", "resnet50", "mobilenetv2", "efficientnet-b0"]
    /// torchvision's spellings, accepted too.
    static let aliases = ["mobilenet_v2": "mobilenetv2", "efficientnet_b0": "efficientnet-b0"]

    /// - Parameter fuseActivations: see `Network.init` (false only to compare against in tests).
    public static func build(_ spec: ModelSpec, backend: ConvolutionBackend = ConvolutionBackends.portable,
                             fuseActivations: Bool = true) throws -> Network {
        try Network(spec: spec, layers: layers(spec, backend: backend), fuseActivations: fuseActivations)
    }

    /// The named layers of `spec`'s network, not yet configured.
    public static func layers(_ spec: ModelSpec,
                              backend: ConvolutionBackend = ConvolutionBackends.portable) throws -> [NamedLayer] {
        guard spec.channels >= 1, spec.imageSize >= 1, spec.classes >= 2 else {
            throw ModelError.invalidOption("model needs channels ≥ 1, image size ≥ 1 and at least 2 classes (got \(spec.channels), \(spec.imageSize), \(spec.classes))")
        }
        if let head = spec.head, let bad = head.first(where: { $0 < 1 }) {
            throw ModelError.invalidOption("classifier head widths must be positive (got \(bad))")
        }
        let name = aliases[spec.architecture] ?? spec.architecture
        if name != "refcnn" && name != "cnn-small" && !spec.batchNorm {
            throw ModelError.invalidOption("\(name) is defined with BatchNorm; it cannot be built without")
        }
        var layers: [NamedLayer]
        switch name {
        case "refcnn": layers = refcnn(spec, backend)
        case "cnn-small": layers = cnnSmall(spec, backend)
        case "resnet18": layers = try resnet(spec, backend, blocks: [2, 2, 2, 2], bottleneck: false)
        case "resnet34": layers = try resnet(spec, backend, blocks: [3, 4, 6, 3], bottleneck: false)
        case "resnet50": layers = try resnet(spec, backend, blocks: [3, 4, 6, 3], bottleneck: true)
        case "mobilenetv2": layers = mobilenetV2(spec, backend)
        case "efficientnet-b0": layers = try efficientNetB0(spec, backend)
        default: throw ModelError.unknownArchitecture(spec.architecture, known: names)
        }
        if let fusion = spec.fusion, let pool = layers.lastIndex(where: { $0.layer is GlobalAvgPool }) {
            // Fusion dropout: the head's dropout when set, else 0.2.
            layers.insert(NamedLayer("fusion", MetadataFusion(metadataWidth: fusion.width, dropout: spec.dropout > 0 ? spec.dropout : 0.2)),
                          at: pool + 1)
        }
        return layers
    }

    /// Sizes of a network, computed by configuring its layers without allocating it.
    public struct Summary: Sendable, Equatable {
        /// Trainable parameters (what torchvision's `sum(p.numel() for p in model.parameters())`
        /// reports; BatchNorm running statistics are not counted).
        public var parameters: Int
        /// Non-trainable state (BatchNorm running mean and variance).
        public var state: Int
        /// Trainable tensors.
        public var tensors: Int
        /// Forward multiply-adds per sample of the convolutions and linear layers.
        public var macsPerSample: Int
        public var output: FeatureShape
    }

    public static func summary(_ spec: ModelSpec) throws -> Summary {
        var shape = FeatureShape(channels: spec.channels, height: spec.imageSize, width: spec.imageSize)
        var s = Summary(parameters: 0, state: 0, tensors: 0, macsPerSample: 0, output: shape)
        for l in try layers(spec) {
            shape = try l.layer.configure(input: shape)
            let specs = l.layer.parameterSpecs
            s.parameters += specs.map(\.count).reduce(0, +)
            s.tensors += specs.count
            s.state += l.layer.stateSpecs.map(\.count).reduce(0, +)
            s.macsPerSample += Network.macs(l.layer)
        }
        s.output = shape
        return s
    }

    /// The trainable parameter count of `spec`'s network, without allocating it.
    public static func parameterCount(_ spec: ModelSpec) throws -> Int { try summary(spec).parameters }

    /// How the classifier after global pooling is named.
    enum HeadStyle {
        /// torchvision ResNet: one linear layer "fc" (a dropout, if any, unnamed before it);
        /// with a hidden MLP "fc" becomes "fc.0", "fc.1", ….
        case fc
        /// torchvision MobileNetV2/EfficientNet: "classifier.0" dropout, "classifier.1" linear;
        /// a hidden MLP continues the numbering.
        case classifier
    }

    /// Dropout, the optional hidden MLP of `spec.head` (Linear → BatchNorm1d → ReLU → Dropout per
    /// width) and the final Linear to `spec.classes`.
    static func classifierHead(_ spec: ModelSpec, style: HeadStyle,
                               weightInit: ParameterSpec.Initializer? = nil,
                               biasInit: ParameterSpec.Initializer? = nil) -> [NamedLayer] {
        let hidden = spec.head ?? []
        let prefix = style == .fc ? "fc" : "classifier"
        var layers: [NamedLayer] = []
        var i = 0
        switch style {
        case .fc:
            if spec.dropout > 0 { layers.append(NamedLayer("dropout", Dropout(p: spec.dropout))) }
        case .classifier:
            layers.append(NamedLayer("\(prefix).0", Dropout(p: spec.dropout))); i = 1
        }
        for (h, width) in hidden.enumerated() {
            layers.append(NamedLayer("\(prefix).\(i)", Linear(outFeatures: width, weightInit: weightInit, biasInit: biasInit)))
            layers.append(NamedLayer("\(prefix).\(i + 1)", BatchNorm2d()))
            layers.append(NamedLayer("\(prefix).\(i + 2)", ReLU()))
            layers.append(NamedLayer("\(prefix).\(i + 3)", Dropout(p: spec.headDropout ?? spec.dropout, salt: UInt64(h + 1))))
            i += 4
        }
        let last = style == .fc && hidden.isEmpty ? prefix : "\(prefix).\(i)"
        layers.append(NamedLayer(last, Linear(outFeatures: spec.classes, weightInit: weightInit, biasInit: biasInit)))
        return layers
    }

    /// conv3×3 (+ BatchNorm) + ReLU, appended with torchvision-style indices under `prefix`.
    private static func convBlock(_ out: Int, _ spec: ModelSpec, _ backend: ConvolutionBackend,
                                  prefix: String, index: inout Int, into layers: inout [NamedLayer]) {
        layers.append(NamedLayer("\(prefix).\(index)", Conv2d(outChannels: out, kernel: 3, padding: 1, backend: backend)))
        index += 1
        if spec.batchNorm { layers.append(NamedLayer("\(prefix).\(index)", BatchNorm2d())); index += 1 }
        layers.append(NamedLayer("\(prefix).\(index)", ReLU())); index += 1
    }

    /// The benchmark's reference CNN (`../shared/bench`): 141,354 parameters for 3×32×32 input and
    /// 10 classes; parameter names match its PyTorch twin (`features.N`, `fc`).
    ///
    ///     conv(C→32) BN ReLU, conv(32→32) BN ReLU, maxpool 2
    ///     conv(32→64) BN ReLU, conv(64→64) BN ReLU, maxpool 2
    ///     conv(64→128) BN ReLU, global average pool, linear(128 → classes)
    static func refcnn(_ spec: ModelSpec, _ backend: ConvolutionBackend) -> [NamedLayer] {
        var layers: [NamedLayer] = [], i = 0
        convBlock(32, spec, backend, prefix: "features", index: &i, into: &layers)
        convBlock(32, spec, backend, prefix: "features", index: &i, into: &layers)
        layers.append(NamedLayer("features.\(i)", MaxPool2d(kernel: 2))); i += 1
        convBlock(64, spec, backend, prefix: "features", index: &i, into: &layers)
        convBlock(64, spec, backend, prefix: "features", index: &i, into: &layers)
        layers.append(NamedLayer("features.\(i)", MaxPool2d(kernel: 2))); i += 1
        convBlock(128, spec, backend, prefix: "features", index: &i, into: &layers)
        layers.append(NamedLayer("features.\(i)", GlobalAvgPool()))
        return layers + classifierHead(spec, style: .fc)
    }

    /// A configurable small CNN: for each width w in `widths` (default 32, 64, 128) a stage of two
    /// conv3×3(+BN)+ReLU blocks, with 2×2 max-pooling between stages and global average pooling
    /// after the last; then dropout (default 0.2) and a linear classifier. About 288k parameters
    /// with the default widths.
    static func cnnSmall(_ spec: ModelSpec, _ backend: ConvolutionBackend) -> [NamedLayer] {
        let widths = spec.widths ?? [32, 64, 128]
        var layers: [NamedLayer] = [], i = 0
        for (s, w) in widths.enumerated() {
            convBlock(w, spec, backend, prefix: "features", index: &i, into: &layers)
            convBlock(w, spec, backend, prefix: "features", index: &i, into: &layers)
            if s < widths.count - 1 { layers.append(NamedLayer("features.\(i)", MaxPool2d(kernel: 2))); i += 1 }
        }
        layers.append(NamedLayer("features.\(i)", GlobalAvgPool()))
        return layers + classifierHead(spec, style: .fc)
    }
}
