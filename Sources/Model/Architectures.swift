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
    /// Dropout before the classifier (0 = none).
    public var dropout: Float

    public init(architecture: String, channels: Int, imageSize: Int, classes: Int, batchNorm: Bool = true,
                widths: [Int]? = nil, dropout: Float = 0) {
        self.architecture = architecture; self.channels = channels; self.imageSize = imageSize
        self.classes = classes; self.batchNorm = batchNorm; self.widths = widths; self.dropout = dropout
    }
}

/// The model zoo: builds a `Network` from a `ModelSpec`.
public enum Architectures {
    public static let names = ["refcnn", "cnn-small"]

    public static func build(_ spec: ModelSpec,
                             backend: ConvolutionBackend = ConvolutionBackends.portable) throws -> Network {
        guard spec.channels >= 1, spec.imageSize >= 1, spec.classes >= 2 else {
            throw ModelError.invalidOption("model needs channels ≥ 1, image size ≥ 1 and at least 2 classes (got \(spec.channels), \(spec.imageSize), \(spec.classes))")
        }
        switch spec.architecture {
        case "refcnn": return try Network(spec: spec, layers: refcnn(spec, backend))
        case "cnn-small": return try Network(spec: spec, layers: cnnSmall(spec, backend))
        default: throw ModelError.unknownArchitecture(spec.architecture, known: names)
        }
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
        if spec.dropout > 0 { layers.append(NamedLayer("dropout", Dropout(p: spec.dropout))) }
        layers.append(NamedLayer("fc", Linear(outFeatures: spec.classes)))
        return layers
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
        if spec.dropout > 0 { layers.append(NamedLayer("dropout", Dropout(p: spec.dropout))) }
        layers.append(NamedLayer("fc", Linear(outFeatures: spec.classes)))
        return layers
    }
}
