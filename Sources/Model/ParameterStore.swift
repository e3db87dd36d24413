/// What a layer declares for each of its trainable tensors.
public struct ParameterSpec: Sendable {
    public enum Initializer: Sendable {
        /// U(-bound, bound) — PyTorch's default for Conv2d/Linear weights and biases uses
        /// bound = 1/sqrt(fan_in).
        case uniform(bound: Float)
        /// N(0, std²) — torchvision's Kaiming-normal (fan-out) initialisation of its zoo's
        /// convolutions uses std = sqrt(2 / (out × k × k)).
        case normal(std: Float)
        case constant(Float)
    }
    public var name: String
    public var count: Int
    /// The tensor's PyTorch shape (e.g. [out, in, k, k]); its product is `count`.
    public var shape: [Int]
    public var initializer: Initializer
    /// Whether weight decay applies (weights yes; biases and normalisation parameters no).
    public var decays: Bool

    /// `shape` defaults to the flat `[count]`.
    public init(name: String, count: Int, initializer: Initializer, decays: Bool, shape: [Int]? = nil) {
        self.name = name; self.count = count; self.initializer = initializer; self.decays = decays
        self.shape = shape ?? [count]
    }
}

/// A non-trainable tensor a layer keeps (BatchNorm running statistics).
public struct StateSpec: Sendable {
    public var name: String
    public var count: Int
    public var initialValue: Float
    public init(name: String, count: Int, initialValue: Float) {
        self.name = name; self.count = count; self.initialValue = initialValue
    }
}

/// One named tensor's place in the flat buffers.
public struct TensorSlot: Sendable {
    public var name: String
    public var range: Range<Int>
    public var decays: Bool
    /// Learning-rate multiplier of this tensor (0 = frozen: no gradient work, no update).
    public var lrScale: Float = 1
    /// PyTorch shape (product = `range.count`).
    public var shape: [Int] = []
}

/// All of a network's numbers in a few flat allocations with one layout:
/// `parameters` and `gradients` are parallel arrays, so zeroing the gradients is one memset, the
/// optimizer is one loop and the gradient allreduce is one buffer. `optimizerState` holds ALL of
/// the optimizer's state in the layout the optimizer chose (`Optimizer.prepare`): SGD's momentum
/// (`count` floats, the default layout), Adam's m and v (2 × `count`) and its step counts; so
/// checkpoints and the rank-0 broadcast carry it unchanged.
/// `state` holds non-trainable tensors (BatchNorm running mean/var), averaged across ranks and
/// saved in checkpoints but never touched by the optimizer.
///
/// Layers keep pointers into these buffers, which are allocated once and never move.
public final class ParameterStore {
    public let count: Int
    public let stateCount: Int
    public let parameters: UnsafeMutablePointer<Float>
    public let gradients: UnsafeMutablePointer<Float>
    /// The optimizer's state: `optimizerStateCount` floats laid out by optimizer `optimizerName`.
    public private(set) var optimizerState: UnsafeMutablePointer<Float>
    public private(set) var optimizerStateCount: Int
    public private(set) var optimizerName = SGD.stateName
    public let state: UnsafeMutablePointer<Float>
    /// Counts `zeroGradients` calls. Layers get a pointer to it (`ParameterBinding.gradientEpoch`):
    /// one whose last backward saw another value knows its gradients are all zero, so it may
    /// write them instead of adding to zeros.
    public let gradientEpoch: UnsafeMutablePointer<UInt64>
    public internal(set) var slots: [TensorSlot]
    public private(set) var stateSlots: [TensorSlot]

    init(parameterSpecs: [ParameterSpec], stateSpecs: [StateSpec]) {
        var slots: [TensorSlot] = [], offset = 0
        for s in parameterSpecs {
            slots.append(TensorSlot(name: s.name, range: offset..<offset + s.count, decays: s.decays, shape: s.shape))
            offset += s.count
        }
        count = offset
        var stateSlots: [TensorSlot] = [], stateOffset = 0
        for s in stateSpecs {
            stateSlots.append(TensorSlot(name: s.name, range: stateOffset..<stateOffset + s.count, decays: false, shape: [s.count]))
            stateOffset += s.count
        }
        stateCount = stateOffset
        self.slots = slots
        self.stateSlots = stateSlots
        parameters = .allocate(capacity: max(count, 1))
        gradients = .allocate(capacity: max(count, 1))
        optimizerState = .allocate(capacity: max(count, 1))
        optimizerStateCount = count
        state = .allocate(capacity: max(stateCount, 1))
        gradientEpoch = .allocate(capacity: 1)
        gradientEpoch.initialize(to: 0)
        parameters.initialize(repeating: 0, count: max(count, 1))
        gradients.initialize(repeating: 0, count: max(count, 1))
        optimizerState.initialize(repeating: 0, count: max(count, 1))
        state.initialize(repeating: 0, count: max(stateCount, 1))
        for (spec, slot) in zip(stateSpecs, stateSlots) {
            (state + slot.range.lowerBound).update(repeating: spec.initialValue, count: spec.count)
        }
    }

    deinit {
        parameters.deallocate(); gradients.deallocate(); optimizerState.deallocate(); state.deallocate()
        gradientEpoch.deallocate()
    }

    /// Gives `optimizerState` room for `stateCount` floats of optimizer `name`, all zero (before
    /// training starts: a checkpoint or the rank-0 broadcast then fills it). Layers never point into it.
    public func allocateOptimizerState(name: String, count stateCount: Int) {
        if stateCount != optimizerStateCount {
            optimizerState.deallocate()
            optimizerState = .allocate(capacity: max(stateCount, 1))
            optimizerState.initialize(repeating: 0, count: max(stateCount, 1))
            optimizerStateCount = stateCount
        }
        optimizerState.update(repeating: 0, count: stateCount)
        optimizerName = name
    }

    /// Elements before the first tensor with a non-zero learning-rate scale (`count` when all are
    /// frozen): frozen tensors' gradients, zero on every rank, which need no allreduce.
    public var frozenPrefix: Int {
        slots.first { $0.lrScale != 0 }?.range.lowerBound ?? count
    }

    /// Sets every gradient to zero (one memset) and starts a new gradient epoch.
    public func zeroGradients() {
        gradients.update(repeating: 0, count: count)
        gradientEpoch.pointee &+= 1
    }

    public var parameterBuffer: UnsafeMutableBufferPointer<Float> { .init(start: parameters, count: count) }
    public var gradientBuffer: UnsafeMutableBufferPointer<Float> { .init(start: gradients, count: count) }
    public var optimizerStateBuffer: UnsafeMutableBufferPointer<Float> { .init(start: optimizerState, count: optimizerStateCount) }
    public var stateBuffer: UnsafeMutableBufferPointer<Float> { .init(start: state, count: stateCount) }
}
