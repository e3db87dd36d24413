/// Whether a forward pass is for training (batch statistics, dropout on) or evaluation.
public enum Mode: Sendable { case train, eval }

/// Where a forward pass sits in training, for layers whose randomness must not depend on how the
/// global batch was split across ranks: dropout draws its mask from (seed, step, sample id).
public struct StepContext {
    public var seed: UInt64
    public var step: Int
    /// The dataset index of each sample in the batch (nil: positions 0..<batch are used).
    public var sampleIDs: UnsafeBufferPointer<Int>?
    /// Per-sample metadata vectors [batch, `MetadataEncoding.width`] for `MetadataFusion`.
    public var metadata: UnsafePointer<Float>?
    public init(seed: UInt64 = 0, step: Int = 0, sampleIDs: UnsafeBufferPointer<Int>? = nil,
                metadata: UnsafePointer<Float>? = nil) {
        self.seed = seed; self.step = step; self.sampleIDs = sampleIDs; self.metadata = metadata
    }
}

/// Pointers a layer receives into the network's `ParameterStore`.
public struct ParameterBinding {
    /// One pointer per declared `ParameterSpec`, in declaration order.
    public var parameters: [UnsafeMutablePointer<Float>]
    public var gradients: [UnsafeMutablePointer<Float>]
    /// One pointer per declared `StateSpec`.
    public var state: [UnsafeMutablePointer<Float>]
    /// The store's `gradientEpoch` (nil: unknown, gradients must always be added to).
    public var gradientEpoch: UnsafePointer<UInt64>? = nil

    /// The part of this binding for parameters `p` and state `s` (a composite layer's sub-layer).
    public func slice(parameters p: Range<Int>, state s: Range<Int>) -> ParameterBinding {
        ParameterBinding(parameters: Array(parameters[p]), gradients: Array(gradients[p]), state: Array(state[s]),
                         gradientEpoch: gradientEpoch)
    }
}

/// A network layer: a forward/backward pair over flat batches.
///
/// Life cycle: `configure(input:)` once (fixes shapes, returns the output shape), the network
/// then allocates the flat parameter store and calls `bind`, then `prepare(maxBatch:)` once to
/// allocate scratch memory. After that `forward`/`backward` allocate nothing.
///
/// Contract for `backward`: `dx` (when non-nil) is overwritten with the input gradient;
/// parameter gradients are *accumulated* (`+=`) into the bound gradient buffers, so the caller
/// zeroes them once per optimizer step (which also makes gradient accumulation free).
public protocol Layer: AnyObject {
    /// Short kind name, e.g. "conv2d", used in messages and parameter names.
    var kind: String { get }
    /// Fixes the layer's shapes for a per-sample input shape and returns the output shape.
    func configure(input: FeatureShape) throws -> FeatureShape
    /// Trainable tensors (valid after `configure`).
    var parameterSpecs: [ParameterSpec] { get }
    /// Non-trainable tensors (valid after `configure`).
    var stateSpecs: [StateSpec] { get }
    func bind(_ binding: ParameterBinding)
    /// Allocates scratch space for batches of up to `maxBatch` samples.
    func prepare(maxBatch: Int)
    /// x: [batch, input], y: [batch, output].
    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                 context: StepContext)
    /// x, y: what forward saw and produced; dy: gradient of the loss w.r.t. y.
    func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                  dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode)
}

public extension Layer {
    var parameterSpecs: [ParameterSpec] { [] }
    var stateSpecs: [StateSpec] { [] }
    func bind(_ binding: ParameterBinding) {}
    func prepare(maxBatch: Int) {}
}
