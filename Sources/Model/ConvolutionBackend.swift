/// Geometry of a 2-D convolution (square kernels, symmetric padding).
///
/// With `groups` = g the input and output channels are split into g groups and output group i
/// sees only input group i (PyTorch semantics); g = channels is a depthwise convolution.
public struct ConvGeometry: Hashable, Sendable {
    public var input: FeatureShape
    public var outChannels: Int
    public var kernel: Int
    public var stride: Int
    public var padding: Int
    public var groups: Int = 1
    /// Whether the convolution adds a bias (backends may skip the bias work without one).
    public var bias: Bool = true

    public var outHeight: Int { (input.height + 2 * padding - kernel) / stride + 1 }
    public var outWidth: Int { (input.width + 2 * padding - kernel) / stride + 1 }
    public var output: FeatureShape { FeatureShape(channels: outChannels, height: outHeight, width: outWidth) }
    /// Input and output channels of one group.
    public var groupInChannels: Int { input.channels / groups }
    public var groupOutChannels: Int { outChannels / groups }
    /// Length of one im2col column: (inChannels / groups) × kernel × kernel.
    public var patch: Int { groupInChannels * kernel * kernel }
    /// Weight count: outChannels × (inChannels / groups) × kernel × kernel (PyTorch's OIHW order).
    public var weightCount: Int { outChannels * patch }
    /// The PyTorch shape of the weight tensor.
    public var weightShape: [Int] { [outChannels, groupInChannels, kernel, kernel] }
    /// Multiply-adds per sample for the forward pass.
    public var macsPerSample: Int { weightCount * outHeight * outWidth }
}

/// The seam behind which convolution arithmetic lives. A backend turns a geometry into a
/// kernel object that owns its workspace; the `Conv2d` layer owns the parameters and never
/// assumes how the kernel computes. The portable backend is im2col + OpenBLAS sgemm over NCHW;
/// a blocked-layout backend (oneDNN) plugs in here with its own activation layout.
public protocol ConvolutionBackend: Sendable {
    var name: String { get }
    /// A kernel reading and writing planar NCHW activations.
    func makeKernel(_ geometry: ConvGeometry, maxBatch: Int) -> ConvolutionKernel
    /// The layouts a kernel for `geometry` would read and write, offered `offered` by the
    /// previous layer (default: planar, whatever is offered).
    func layouts(_ geometry: ConvGeometry, offered: ActivationLayout) -> (input: ActivationLayout, output: ActivationLayout)
    /// The order its kernels want the weights of `geometry` kept in (nil: PyTorch's OIHW),
    /// decided once when the network is built; the parameter store keeps them so.
    func weightLayout(_ geometry: ConvGeometry) -> ParameterLayout?
    /// A kernel reading `input` and writing `output` (as `layouts` chose them), with weights
    /// (and their gradients) in `weights` (as `weightLayout` chose it).
    func makeKernel(_ geometry: ConvGeometry, maxBatch: Int, input: ActivationLayout, output: ActivationLayout,
                    weights: ParameterLayout?) -> ConvolutionKernel
}

public extension ConvolutionBackend {
    func layouts(_ geometry: ConvGeometry, offered: ActivationLayout) -> (input: ActivationLayout, output: ActivationLayout) {
        (.planar, .planar)
    }
    func weightLayout(_ geometry: ConvGeometry) -> ParameterLayout? { nil }
    func makeKernel(_ geometry: ConvGeometry, maxBatch: Int, input: ActivationLayout, output: ActivationLayout,
                    weights: ParameterLayout?) -> ConvolutionKernel {
        precondition(input == .planar && output == .planar && weights == nil, "\(name) convolutions are planar only")
        return makeKernel(geometry, maxBatch: maxBatch)
    }
}

/// One convolution shape's compiled work. All pointers are to whole batches; weights and their
/// gradients are in the layout the kernel was made with (OIHW for `makeKernel(_:maxBatch:)`).
public protocol ConvolutionKernel: AnyObject {
    /// y = conv(x, weight) + bias.
    func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 y: UnsafeMutablePointer<Float>, batch: Int)
    /// dx = conv_transpose(dy, weight) (overwrites dx).
    func backwardData(dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                      dx: UnsafeMutablePointer<Float>, batch: Int)
    /// dWeight += correlate(x, dy); dBias += sum(dy) (accumulates). `dWeightIsZero`: the caller
    /// knows dWeight holds zeros, so the kernel may write it instead of adding.
    func backwardWeights(x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, batch: Int,
                         dWeightIsZero: Bool)
}

public extension ConvolutionKernel {
    /// dWeight += correlate(x, dy); dBias += sum(dy).
    func backwardWeights(x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, batch: Int) {
        backwardWeights(x: x, dy: dy, dWeight: dWeight, dBias: dBias, batch: batch, dWeightIsZero: false)
    }
}

/// The backends this build has, by name (`--conv-backend`).
public enum ConvolutionBackends {
    public static let portable: ConvolutionBackend = Im2colGEMMBackend()
    public static let onednn: ConvolutionBackend = OneDNNBackend()
    public static var all: [ConvolutionBackend] { [onednn, portable] }
    /// How oneDNN keeps convolution weights (`--conv-weights`): in its blocked formats, or OIHW.
    public static let weightFormats = ["blocked", "oihw"]

    /// `name` with `algorithm` (`--conv-algo`) and `weights` (`--conv-weights`; only oneDNN has
    /// these choices). `layout`: the activation layout oneDNN networks keep between layers
    /// (blocked16 by default).
    public static func named(_ name: String, algorithm: String = "auto", weights: String = "blocked",
                             layout: ActivationLayout = .blocked16) throws -> ConvolutionBackend {
        guard weightFormats.contains(weights) else {
            throw ModelError.invalidOption("unknown convolution weight format '\(weights)' (known: \(weightFormats.joined(separator: ", ")))")
        }
        guard let algorithm = ConvAlgorithm(rawValue: algorithm) else {
            throw ModelError.invalidOption("unknown convolution algorithm '\(algorithm)' (known: \(ConvAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard all.contains(where: { $0.name == name }) else {
            throw ModelError.invalidOption("unknown convolution backend '\(name)' (known: \(all.map(\.name).joined(separator: ", ")))")
        }
        if name == onednn.name { return OneDNNBackend(algorithm: algorithm, layout: layout, blockedWeights: weights == "blocked") }
        guard algorithm == .direct || algorithm == .auto else {
            throw ModelError.invalidOption("--conv-algo \(algorithm.rawValue) needs --conv-backend onednn")
        }
        return portable
    }
}
