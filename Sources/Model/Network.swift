import Support

/// A layer with the name its parameters are saved under (torchvision-style, e.g. "features.0").
public struct NamedLayer {
    public var name: String
    public var layer: Layer
    public init(_ name: String, _ layer: Layer) { self.name = name; self.layer = layer }
}

/// A feed-forward network over one flat `ParameterStore`, with activation memory planned once.
///
///     let net = try Architectures.build(spec)
///     net.initializeParameters(seed: 1)
///     net.prepare(maxBatch: 64)
///     let logits = net.forward(input, batch: 64, mode: .train)   // [64, classes]
///     net.backward(input, dLogits: dLogits, batch: 64, mode: .train)
public final class Network {
    public let spec: ModelSpec
    public let layers: [NamedLayer]
    public let inputShape: FeatureShape
    /// Output shape of each layer.
    public let shapes: [FeatureShape]
    public let store: ParameterStore
    public private(set) var maxBatch = 0
    /// Full names of the trainable tensors in store order ("features.0.weight", …).
    public var parameterNames: [String] { store.slots.map(\.name) }
    public var stateNames: [String] { store.stateSlots.map(\.name) }

    /// Each layer's output memory; a pass-through layer's is its input's (the previous layer's).
    private var outputs: [UnsafeMutablePointer<Float>] = []
    /// Layers that are skipped: activations absorbed by the BatchNorm before them (see
    /// BatchNormActivation.swift); they own no output buffer.
    private let skipped: [Bool]
    private var gradA: UnsafeMutablePointer<Float>?, gradB: UnsafeMutablePointer<Float>?
    private var specsPerLayer: [[ParameterSpec]] = []
    /// Top-level layers below this index have only frozen tensors (or none): `backward` stops
    /// there (set by `applyFineTuning`; `layers.count` when nothing is trainable).
    var firstTrainableLayer = 0
    /// The layout each layer reads and writes (see `LayoutNegotiating`).
    public let layouts: [(input: ActivationLayout, output: ActivationLayout)]
    /// Layers before which the activation is converted (its producer writes another layout),
    /// and `layers.count` when the last output is converted to planar logits.
    public let conversions: [Int]
    /// Per conversion point: the converted activation; plus one buffer for converting gradients back.
    private var converted: [Int: UnsafeMutablePointer<Float>] = [:]
    private var gradScratch: UnsafeMutablePointer<Float>?
    /// Store offset of each top-level layer's first parameter (nil: the layer has none).
    private var firstParameterOffset: [Int?] = []

    /// Receives the gradient watermark during `backward` (nil: nobody is told). Weak: the
    /// observer usually owns a reference to the network's store.
    public weak var gradientObserver: GradientProgressObserver? {
        didSet { for l in layers { (l.layer as? Sequential)?.attach(gradientObserver, base: store.gradients) } }
    }

    /// - Parameter fuseActivations: let each BatchNorm compute the ReLU/ReLU6/SiLU layer that
    ///   directly follows it (see BatchNormActivation.swift); false keeps them separate layers
    ///   (same results within float rounding; for tests).
    public init(spec: ModelSpec, layers: [NamedLayer], fuseActivations: Bool = true) throws {
        self.spec = spec
        self.layers = layers
        if fuseActivations { layers.fuseBatchNormActivations() }
        let skipped = layers.enumerated().map { $0.offset > 0 && isPassThrough($0.element.layer) }
        self.skipped = skipped
        inputShape = FeatureShape(channels: spec.channels, height: spec.imageSize, width: spec.imageSize)
        var shape = inputShape, shapes: [FeatureShape] = []
        for l in layers {
            shape = try l.layer.configure(input: shape)
            shapes.append(shape)
        }
        self.shapes = shapes
        // Each layer is offered its producer's layout; the network converts where they differ.
        var offered = ActivationLayout.planar, layouts: [(input: ActivationLayout, output: ActivationLayout)] = []
        var conversions: [Int] = []
        for (i, l) in layers.enumerated() {
            let chosen = (l.layer as? LayoutNegotiating)?.negotiate(offered: offered, allowBlocked: true) ?? (.planar, .planar)
            if chosen.input != offered && (i == 0 ? inputShape : shapes[i - 1]).plane > 1 { conversions.append(i) }
            layouts.append(chosen)
            offered = chosen.output
        }
        if offered != .planar && (shapes.last ?? inputShape).plane > 1 { conversions.append(layers.count) }
        self.layouts = layouts
        self.conversions = conversions
        precondition(!conversions.contains { $0 < layers.count && skipped[$0] }, "a pass-through layer changes the layout")
        // Specs after negotiation: a tensor's layout may depend on the activation layouts.
        var pSpecs: [ParameterSpec] = [], sSpecs: [StateSpec] = []
        var perLayer: [[ParameterSpec]] = []
        for l in layers {
            let ps = l.layer.parameterSpecs.map { s -> ParameterSpec in var s = s; s.name = "\(l.name).\(s.name)"; return s }
            perLayer.append(ps)
            pSpecs += ps
            sSpecs += l.layer.stateSpecs.map { StateSpec(name: "\(l.name).\($0.name)", count: $0.count, initialValue: $0.initialValue) }
        }
        specsPerLayer = perLayer
        store = ParameterStore(parameterSpecs: pSpecs, stateSpecs: sSpecs)
        var pi = 0, si = 0
        for l in layers {
            let np = l.layer.parameterSpecs.count, ns = l.layer.stateSpecs.count
            let binding = ParameterBinding(
                parameters: store.slots[pi..<pi + np].map { store.parameters + $0.range.lowerBound },
                gradients: store.slots[pi..<pi + np].map { store.gradients + $0.range.lowerBound },
                state: store.stateSlots[si..<si + ns].map { store.state + $0.range.lowerBound },
                gradientEpoch: store.gradientEpoch)
            l.layer.bind(binding)
            firstParameterOffset.append(np > 0 ? store.slots[pi].range.lowerBound : nil)
            pi += np; si += ns
        }
    }

    deinit { freeActivations() }

    public var outputShape: FeatureShape { shapes.last ?? inputShape }
    public var parameterCount: Int { store.count }

    /// Multiply-adds per sample of the convolutions and linear layers (forward), including
    /// those inside composite layers.
    public var macsPerSample: Int { layers.map { Self.macs($0.layer) }.reduce(0, +) }

    static func macs(_ layer: Layer) -> Int {
        if let c = layer as? Conv2d, let g = c.geometry { return g.macsPerSample }
        if let lin = layer as? Linear { return lin.inFeatures * lin.outFeatures }
        if let composite = layer as? CompositeLayer { return composite.sublayers.map { macs($0.layer) }.reduce(0, +) }
        return 0
    }

    /// Fills parameters from their initializers with a seeded generator (identical on every rank
    /// for the same seed; rank 0's values are broadcast anyway).
    public func initializeParameters(seed: UInt64) {
        initialize(slots: Array(store.slots.indices), seed: seed)
        store.optimizerState.update(repeating: 0, count: store.optimizerStateCount)
        store.zeroGradients()
    }

    /// Re-draws the given parameter tensors (indices into `store.slots`) from their initializers.
    func initialize(slots indices: [Int], seed: UInt64) {
        var rng = RandomSource(seed: seed, stream: 0x1417)
        let specs = specsPerLayer.flatMap { $0 }
        for index in indices {
            // Drawn in canonical order, so every layout starts from the same values.
            let spec = specs[index], slot = store.slots[index]
            var values = [Float](repeating: 0, count: spec.count)
            switch spec.initializer {
            case let .uniform(bound):
                for i in 0..<spec.count { values[i] = (rng.nextFloat() * 2 - 1) * bound }
            case let .normal(std):
                for i in 0..<spec.count { values[i] = rng.nextGaussian() * std }
            case let .constant(v):
                values.withUnsafeMutableBufferPointer { $0.update(repeating: v) }
            }
            store.setCanonical(values, slot: slot, into: store.parameters)
        }
    }

    /// Allocates activation and gradient memory for batches of up to `maxBatch` samples.
    public func prepare(maxBatch: Int) {
        guard maxBatch != self.maxBatch else { return }
        freeActivations()
        self.maxBatch = maxBatch
        let largest = max(shapes.map(\.count).max() ?? 1, inputShape.count)
        for (i, s) in shapes.enumerated() {
            if skipped[i] { outputs.append(outputs[i - 1]); continue }
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, maxBatch * s.count))
            p.initialize(repeating: 0, count: max(1, maxBatch * s.count))
            outputs.append(p)
        }
        gradA = .allocate(capacity: max(1, maxBatch * largest)); gradA!.initialize(repeating: 0, count: max(1, maxBatch * largest))
        gradB = .allocate(capacity: max(1, maxBatch * largest)); gradB!.initialize(repeating: 0, count: max(1, maxBatch * largest))
        for i in conversions {
            let shape = i == 0 ? inputShape : shapes[i - 1]
            converted[i] = .allocate(capacity: max(1, maxBatch * shape.count))
            converted[i]!.initialize(repeating: 0, count: max(1, maxBatch * shape.count))
        }
        if !conversions.isEmpty {
            gradScratch = .allocate(capacity: max(1, maxBatch * largest)); gradScratch!.initialize(repeating: 0, count: max(1, maxBatch * largest))
        }
        for l in layers { l.layer.prepare(maxBatch: maxBatch) }
    }

    /// The layout of the activation entering layer `i` (`layers.count`: the network's output) as its producer wrote it.
    private func producedLayout(_ i: Int) -> ActivationLayout { i == 0 ? .planar : layouts[i - 1].output }
    private func wantedLayout(_ i: Int) -> ActivationLayout { i == layers.count ? .planar : layouts[i].input }
    private func inputShape(_ i: Int) -> FeatureShape { i == 0 ? inputShape : shapes[i - 1] }

    private func freeActivations() {
        for (i, p) in outputs.enumerated() where !skipped[i] { p.deallocate() }
        outputs = []
        converted.values.forEach { $0.deallocate() }
        converted = [:]
        gradScratch?.deallocate(); gradScratch = nil
        gradA?.deallocate(); gradB?.deallocate()
        gradA = nil; gradB = nil
    }

    /// Runs every layer; returns the logits [batch, outputShape.count] (valid until the next call).
    @discardableResult
    public func forward(_ input: UnsafePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext = StepContext()) -> UnsafePointer<Float> {
        precondition(batch <= maxBatch, "batch \(batch) exceeds the prepared maximum \(maxBatch)")
        var x = input
        for (i, l) in layers.enumerated() {
            if let c = converted[i] {
                LayoutConversion.convert(x, from: producedLayout(i), to: wantedLayout(i), c, shape: inputShape(i), batch: batch)
                x = UnsafePointer(c)
            }
            if skipped[i] { continue }
            l.layer.forward(x, outputs[i], batch: batch, mode: mode, context: context)
            x = UnsafePointer(outputs[i])
        }
        if let c = converted[layers.count] {
            LayoutConversion.convert(x, from: producedLayout(layers.count), to: .planar, c, shape: outputShape, batch: batch)
            x = UnsafePointer(c)
        }
        return x
    }

    /// Back-propagates `dLogits` through every layer, accumulating parameter gradients.
    /// Must follow the `forward` of the same batch. Stops at the lowest layer with a trainable
    /// tensor (a frozen prefix gets no input-gradient work either).
    public func backward(_ input: UnsafePointer<Float>, dLogits: UnsafePointer<Float>, batch: Int, mode: Mode) {
        var dy = dLogits
        var useA = true
        if converted[layers.count] != nil {
            LayoutConversion.convert(dy, from: .planar, to: producedLayout(layers.count), gradB!, shape: outputShape, batch: batch)
            dy = UnsafePointer(gradB!)
        }
        for i in stride(from: layers.count - 1, through: firstTrainableLayer, by: -1) {
            if skipped[i] {
                gradientObserver?.backwardProgress(finalFrom: nil)
                continue
            }
            let x = converted[i].map { UnsafePointer($0) } ?? (i == 0 ? input : UnsafePointer(outputs[i - 1]))
            let dx: UnsafeMutablePointer<Float>? = i == firstTrainableLayer ? nil : (useA ? gradA! : gradB!)
            // A converted input gets its gradient in the layer's layout, converted back after.
            let converts = converted[i] != nil && dx != nil
            layers[i].layer.backward(x: x, y: outputs[i], dy: dy, dx: converts ? gradScratch! : dx, batch: batch, mode: mode)
            if converts {
                LayoutConversion.convert(gradScratch!, from: wantedLayout(i), to: producedLayout(i), dx!, shape: inputShape(i), batch: batch)
            }
            gradientObserver?.backwardProgress(finalFrom: firstParameterOffset[i])
            if let dx { dy = UnsafePointer(dx) }
            useA.toggle()
        }
        // A frozen prefix is skipped: its (zero) gradients are final too.
        if firstTrainableLayer > 0 { gradientObserver?.backwardProgress(finalFrom: 0) }
    }
}
