/// A layer built from named sub-layers. Its tensors are the sub-layers' tensors, named
/// "<sub-layer>.<tensor>" (e.g. "conv1.weight", "downsample.0.weight"), in sub-layer order.
public protocol CompositeLayer: Layer {
    /// The sub-layers, named relative to this layer, in parameter order.
    var sublayers: [NamedLayer] { get }
}

extension Array where Element == NamedLayer {
    /// The sub-layers' parameter specs, named "<sub-layer>.<tensor>" (just "<tensor>" for an unnamed one).
    var prefixedParameterSpecs: [ParameterSpec] {
        flatMap { l in l.layer.parameterSpecs.map { s in var s = s; s.name = Self.join(l.name, s.name); return s } }
    }

    var prefixedStateSpecs: [StateSpec] {
        flatMap { l in l.layer.stateSpecs.map { s in var s = s; s.name = Self.join(l.name, s.name); return s } }
    }

    /// Hands each sub-layer its slice of `binding` (which follows `prefixedParameterSpecs` order).
    func bindEach(_ binding: ParameterBinding) {
        var p = 0, s = 0
        for l in self {
            let np = l.layer.parameterSpecs.count, ns = l.layer.stateSpecs.count
            l.layer.bind(binding.slice(parameters: p..<p + np, state: s..<s + ns))
            p += np; s += ns
        }
    }

    static func join(_ prefix: String, _ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }
}

/// A zero-filled Float allocation a layer owns for its activations or gradients.
final class FloatBuffer {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(count: Int) {
        self.count = max(count, 1)
        pointer = .allocate(capacity: self.count)
        pointer.initialize(repeating: 0, count: self.count)
    }
    deinit { pointer.deallocate() }
}

/// Sub-layers applied one after another (PyTorch `nn.Sequential`), with its own activation
/// memory: the last sub-layer writes straight into the caller's `y`, the others into buffers
/// allocated by `prepare`. Sub-layers are named as in torchvision ("0", "1", … or "conv1", "bn1", …).
///
///     let block = Sequential([NamedLayer("0", Conv2d(outChannels: 32, kernel: 3, padding: 1, bias: false)),
///                             NamedLayer("1", BatchNorm2d()), NamedLayer("2", ReLU6())])
///
/// A pass-through sub-layer (an activation its BatchNorm absorbed) is skipped: its output is its
/// input's memory, and if it ends the chain, the layer before it writes `y`.
///
/// x: [batch, input] → y: [batch, output of the last sub-layer].
public final class Sequential: CompositeLayer {
    public let kind = "sequential"
    public let sublayers: [NamedLayer]
    /// Output shape of each sub-layer (after `configure`).
    public private(set) var shapes: [FeatureShape] = []
    /// Output memory of each sub-layer that writes to a buffer of its own (not the last one that
    /// computes, which writes `y`; pass-throughs share their input's).
    private var outputs: [FloatBuffer?] = []
    /// Per sub-layer: skipped (see `isPassThrough`), and the index of the sub-layer whose output
    /// memory holds its output (itself, or for a pass-through the one it passes on).
    private var skipped: [Bool] = [], owner: [Int] = []
    /// The last sub-layer that is not a pass-through: it writes the caller's `y`.
    private var lastComputing = 0
    private var gradA: FloatBuffer?, gradB: FloatBuffer?
    /// First gradient pointer of each sub-layer (nil: it has no parameters), from `bind`.
    private var firstGradient: [UnsafeMutablePointer<Float>?] = []
    /// Told after each sub-layer's backward (see `GradientProgressObserver`), with offsets
    /// relative to `gradientBase` (the store's gradient buffer).
    private weak var observer: GradientProgressObserver?
    private var gradientBase: UnsafeMutablePointer<Float>?

    public init(_ sublayers: [NamedLayer]) { self.sublayers = sublayers }

    public func configure(input: FeatureShape) throws -> FeatureShape {
        guard !sublayers.isEmpty else {
            throw ModelError.invalidShape(layer: kind, input: input, reason: "no sub-layers")
        }
        var shape = input
        shapes = []
        for l in sublayers {
            shape = try l.layer.configure(input: shape)
            shapes.append(shape)
        }
        return shape
    }

    public var parameterSpecs: [ParameterSpec] { sublayers.prefixedParameterSpecs }
    public var stateSpecs: [StateSpec] { sublayers.prefixedStateSpecs }
    public func bind(_ binding: ParameterBinding) {
        sublayers.bindEach(binding)
        var p = 0
        firstGradient = sublayers.map { l in
            let np = l.layer.parameterSpecs.count
            defer { p += np }
            return np > 0 ? binding.gradients[p] : nil
        }
    }

    /// Reports backward progress to `observer` (and passes it on to nested `Sequential`s).
    func attach(_ observer: GradientProgressObserver?, base: UnsafeMutablePointer<Float>) {
        self.observer = observer
        gradientBase = base
        for l in sublayers { (l.layer as? Sequential)?.attach(observer, base: base) }
    }

    public func prepare(maxBatch: Int) {
        skipped = sublayers.enumerated().map { $0.offset > 0 && isPassThrough($0.element.layer) }
        owner = []
        for i in sublayers.indices { owner.append(skipped[i] ? owner[i - 1] : i) }
        lastComputing = owner.last ?? 0
        outputs = shapes.indices.map { i in
            owner[i] == i && i != lastComputing ? FloatBuffer(count: maxBatch * shapes[i].count) : nil
        }
        let largest = shapes.dropLast().map(\.count).max() ?? 0
        gradA = largest > 0 ? FloatBuffer(count: maxBatch * largest) : nil
        gradB = largest > 0 ? FloatBuffer(count: maxBatch * largest) : nil
        for l in sublayers { l.layer.prepare(maxBatch: maxBatch) }
    }

    /// Where sub-layer i's output lives.
    @inline(__always) private func output(_ i: Int, _ y: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        owner[i] == lastComputing ? y : outputs[owner[i]]!.pointer
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        var input = x
        for (i, l) in sublayers.enumerated() where !skipped[i] {
            let out = output(i, y)
            l.layer.forward(input, out, batch: batch, mode: mode, context: context)
            input = UnsafePointer(out)
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        let yOut = UnsafeMutablePointer(mutating: y)
        var g = dy, useA = true
        for i in stride(from: sublayers.count - 1, through: 0, by: -1) {
            if !skipped[i] {
                let xi = i == 0 ? x : UnsafePointer(output(i - 1, yOut))
                let dxi = i == 0 ? dx : (useA ? gradA! : gradB!).pointer
                sublayers[i].layer.backward(x: xi, y: output(i, yOut), dy: g, dx: dxi, batch: batch, mode: mode)
                if let dxi { g = UnsafePointer(dxi) }
                useA.toggle()
            }
            if let observer, let base = gradientBase {
                observer.backwardProgress(finalFrom: firstGradient[i].map { $0 - base })
            }
        }
    }
}

extension Sequential: LayoutNegotiating {
    /// The sub-layers in order, each offered its predecessor's output; all planar when they
    /// would need a conversion in between.
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) {
        if let chain = Self.chain(sublayers.map(\.layer), offered: offered, allowBlocked: allowBlocked) { return chain }
        return Self.chain(sublayers.map(\.layer), offered: .planar, allowBlocked: false)!
    }

    /// (input, output) of `layers` negotiated in a row, or nil where one reads another layout
    /// than its predecessor writes (beyond 1×1 planes, where the layouts coincide, this is not checked).
    static func chain(_ layers: [Layer], offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout)? {
        var current = offered
        var first: ActivationLayout?
        for l in layers {
            let chosen = (l as? LayoutNegotiating)?.negotiate(offered: current, allowBlocked: allowBlocked) ?? (.planar, .planar)
            if chosen.input != current { return nil }
            first = first ?? chosen.input
            current = chosen.output
        }
        return (first ?? offered, current)
    }
}
