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
    /// The order the layer keeps the values in, when not `shape`'s row-major (PyTorch) order:
    /// e.g. a oneDNN convolution's blocked weight format. nil: canonical.
    public var layout: ParameterLayout?

    /// `shape` defaults to the flat `[count]`.
    public init(name: String, count: Int, initializer: Initializer, decays: Bool, shape: [Int]? = nil,
                layout: ParameterLayout? = nil) {
        self.name = name; self.count = count; self.initializer = initializer; self.decays = decays
        self.shape = shape ?? [count]
        self.layout = layout
    }
}

/// A permutation of one tensor's values between its canonical order (row-major in its PyTorch
/// shape: what checkpoints, pretrained files and exports hold) and the order a layer computes
/// on (e.g. oneDNN's OIhw16i16o for convolution weights). Applies alike to the parameter, its
/// gradient and every parameter-shaped block of optimizer state, which stay in the same order
/// so the optimizer, the allreduce and the weight average work elementwise. Conversions run
/// outside the step loop (initialisation, checkpoints, pretrained weights, exports).
public protocol ParameterLayout: AnyObject, Sendable {
    /// The layout's name (e.g. "OIhw16i16o"); layouts with equal names order values alike.
    var name: String { get }
    /// Writes the values at `canonical` into `native` in this layout (the two do not overlap).
    func toNative(_ canonical: UnsafePointer<Float>, _ native: UnsafeMutablePointer<Float>)
    /// Writes the values at `native` into `canonical`, row-major (the two do not overlap).
    func toCanonical(_ native: UnsafePointer<Float>, _ canonical: UnsafeMutablePointer<Float>)
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
    /// The order the values are kept in (nil: canonical, row-major in `shape`).
    public var layout: ParameterLayout?
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
/// A tensor may be kept in a layer's own order (`TensorSlot.layout`, e.g. oneDNN's blocked
/// convolution weights); its gradient and optimizer state then share that order, and
/// `canonical`/`setCanonical` convert at the edges (checkpoints, pretrained weights, exports).
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
    /// How many blocks of `count` floats, parallel to the parameters, start the optimizer state
    /// (SGD's momentum: 1; Adam's m and v: 2); they share the parameters' layouts.
    public private(set) var optimizerParameterBlocks = 1
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
            slots.append(TensorSlot(name: s.name, range: offset..<offset + s.count, decays: s.decays, shape: s.shape,
                                    layout: s.layout))
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
        parameters = Self.allocate(count)
        gradients = Self.allocate(count)
        optimizerState = Self.allocate(count)
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

    /// 64-byte aligned (a cache line; oneDNN's kernels may write a tensor in place with aligned stores).
    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: 4 * max(n, 1), alignment: 64).bindMemory(to: Float.self, capacity: max(n, 1))
    }

    deinit {
        parameters.deallocate(); gradients.deallocate(); optimizerState.deallocate(); state.deallocate()
        gradientEpoch.deallocate()
    }

    /// Gives `optimizerState` room for `stateCount` floats of optimizer `name`, all zero (before
    /// training starts: a checkpoint or the rank-0 broadcast then fills it). Layers never point into it.
    public func allocateOptimizerState(name: String, count stateCount: Int, parameterBlocks: Int) {
        precondition(parameterBlocks * count <= stateCount, "\(name): \(parameterBlocks) parameter blocks do not fit \(stateCount) floats")
        if stateCount != optimizerStateCount {
            optimizerState.deallocate()
            optimizerState = Self.allocate(stateCount)
            optimizerState.initialize(repeating: 0, count: max(stateCount, 1))
            optimizerStateCount = stateCount
        }
        optimizerState.update(repeating: 0, count: stateCount)
        optimizerName = name
        optimizerParameterBlocks = parameterBlocks
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

    // MARK: Canonical order

    /// Whether every tensor is kept in canonical order (then the conversions below are copies).
    public var isCanonical: Bool { slots.allSatisfy { $0.layout == nil } }

    /// The layouts of the tensors kept in a layer's order, e.g. "features.0.weight:OIhw16i16o;…"
    /// ("" when canonical): ranks exchanging raw buffers must agree on it.
    public var layoutSignature: String {
        slots.compactMap { s in s.layout.map { "\(s.name):\($0.name)" } }.joined(separator: ";")
    }

    /// `total` floats (default `count`) that start with `parameterBlocks` blocks of `count` floats
    /// parallel to the parameters (parameters, gradients, optimizer state, the weight average),
    /// the rest copied as is: the blocks from the store's order into canonical order.
    public func canonical(_ values: UnsafePointer<Float>, count total: Int? = nil, parameterBlocks: Int = 1) -> [Float] {
        let total = total ?? count
        precondition(parameterBlocks * count <= total, "\(parameterBlocks) parameter blocks do not fit \(total) floats")
        return [Float](unsafeUninitializedCapacity: max(total, 1)) { out, n in
            let base = out.baseAddress!
            base.initialize(from: values, count: total)
            for b in 0..<parameterBlocks {
                for s in slots {
                    guard let layout = s.layout else { continue }
                    let at = b * count + s.range.lowerBound
                    layout.toCanonical(values + at, base + at)
                }
            }
            n = total
        }
    }

    /// The inverse of `canonical`: writes `total` floats from canonical order into `values`.
    public func setCanonical(_ canonical: UnsafePointer<Float>, count total: Int? = nil, parameterBlocks: Int = 1,
                             into values: UnsafeMutablePointer<Float>) {
        let total = total ?? count
        precondition(parameterBlocks * count <= total, "\(parameterBlocks) parameter blocks do not fit \(total) floats")
        values.update(from: canonical, count: total)
        for b in 0..<parameterBlocks {
            for s in slots where s.layout != nil { setCanonical(canonical + b * count + s.range.lowerBound, slot: s, into: values + b * count) }
        }
    }

    /// Writes one tensor's canonical-order values into its slot of `values` in the store's order.
    public func setCanonical(_ canonical: UnsafePointer<Float>, slot s: TensorSlot, into values: UnsafeMutablePointer<Float>) {
        let to = values + s.range.lowerBound
        if let layout = s.layout { layout.toNative(canonical, to) } else { to.update(from: canonical, count: s.range.count) }
    }

    /// The parameters in canonical order.
    public var canonicalParameters: [Float] { canonical(parameters) }
    /// The gradients in canonical order.
    public var canonicalGradients: [Float] { canonical(gradients) }
    /// The optimizer state with its parameter-shaped blocks in canonical order (what checkpoints hold).
    public var canonicalOptimizerState: [Float] {
        canonical(optimizerState, count: optimizerStateCount, parameterBlocks: optimizerParameterBlocks)
    }

    /// Fills the optimizer state from `canonicalOptimizerState`'s form.
    public func setCanonicalOptimizerState(_ values: [Float]) {
        precondition(values.count == optimizerStateCount, "optimizer state has \(optimizerStateCount) floats, not \(values.count)")
        setCanonical(values, count: optimizerStateCount, parameterBlocks: optimizerParameterBlocks, into: optimizerState)
    }

    public var parameterBuffer: UnsafeMutableBufferPointer<Float> { .init(start: parameters, count: count) }
    public var gradientBuffer: UnsafeMutableBufferPointer<Float> { .init(start: gradients, count: count) }
    public var optimizerStateBuffer: UnsafeMutableBufferPointer<Float> { .init(start: optimizerState, count: optimizerStateCount) }
    public var stateBuffer: UnsafeMutableBufferPointer<Float> { .init(start: state, count: stateCount) }
}
