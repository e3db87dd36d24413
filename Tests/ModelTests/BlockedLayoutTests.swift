import Testing
@testable import Model
import Support

/// The blocked (nChw16c) activation layout: each layout-native layer gives, after converting,
/// what it gives on the planar layout (forward, dx and parameter gradients), and a oneDNN
/// network keeps the layout end to end without conversions.
@Suite struct BlockedLayoutTests {
    /// Largest |a − b|; a NaN on either side (an element never written) counts as infinite.
    func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { let d = abs($0 - $1); return d.isNaN ? .infinity : d }.max() ?? 0
    }

    func convert(_ v: [Float], _ from: ActivationLayout, _ to: ActivationLayout, _ shape: FeatureShape, _ batch: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: v.count)
        LayoutConversion.convert(v, from: from, to: to, &out, shape: shape, batch: batch)
        return out
    }

    struct Result { var y: [Float]; var dx: [Float]; var grads: [Float]; var state: [Float] }

    /// Forward + backward of `layer` (made fresh by `make`) on planar data, in `layout`; the
    /// results are converted back to planar.
    func run(_ make: () -> Layer, input: FeatureShape, batch: Int, mode: Mode, layout: ActivationLayout,
             distinct: Bool = false, parameterInit: ((inout RandomSource) -> Float)? = nil) throws -> Result {
        let layer = make()
        let out = try layer.configure(input: input)
        if layout == .blocked16 {
            let chosen = (layer as! LayoutNegotiating).negotiate(offered: .blocked16, allowBlocked: true)
            #expect(chosen.input == .blocked16)
        }
        let outLayout = layout == .blocked16 ? (layer as! LayoutNegotiating).negotiate(offered: layout, allowBlocked: true).output : .planar
        let store = ParameterStore(parameterSpecs: layer.parameterSpecs, stateSpecs: layer.stateSpecs)
        layer.bind(ParameterBinding(parameters: store.slots.map { store.parameters + $0.range.lowerBound },
                                    gradients: store.slots.map { store.gradients + $0.range.lowerBound },
                                    state: store.stateSlots.map { store.state + $0.range.lowerBound }))
        layer.prepare(maxBatch: batch)
        var rng = RandomSource(seed: 4)
        for i in 0..<store.count { store.parameters[i] = parameterInit?(&rng) ?? 1 + rng.nextGaussian() * 0.3 }
        for i in 0..<store.stateCount { store.state[i] = 0.5 + rng.nextFloat() }
        let xPlanar = distinct ? rng.permutation(batch * input.count).map { Float($0) * 0.01 }
                               : (0..<batch * input.count).map { _ in rng.nextGaussian() * 2 + 0.5 }
        let dyPlanar = (0..<batch * out.count).map { _ in rng.nextGaussian() }
        let x = convert(xPlanar, .planar, layout, input, batch), dy = convert(dyPlanar, .planar, outLayout, out, batch)
        var y = [Float](repeating: .nan, count: batch * out.count), dx = [Float](repeating: .nan, count: x.count)
        layer.forward(x, &y, batch: batch, mode: mode, context: StepContext())
        store.zeroGradients()
        layer.backward(x: x, y: y, dy: dy, dx: &dx, batch: batch, mode: mode)
        return Result(y: convert(y, outLayout, .planar, out, batch), dx: convert(dx, layout, .planar, input, batch),
                      grads: Array(store.gradientBuffer), state: Array(store.stateBuffer))
    }

    func expectSame(_ make: () -> Layer, input: FeatureShape, mode: Mode = .train, distinct: Bool = false) throws {
        let planar = try run(make, input: input, batch: 3, mode: mode, layout: .planar, distinct: distinct)
        let blocked = try run(make, input: input, batch: 3, mode: mode, layout: .blocked16, distinct: distinct)
        expectSame(planar, blocked)
    }

    func expectSame(_ a: Result, _ b: Result, _ what: String = "blocked vs planar") {
        #expect(maxDifference(a.y, b.y) < 1e-4, "\(what): forward")
        #expect(maxDifference(a.dx, b.dx) < 1e-4, "\(what): dx")
        #expect(maxDifference(a.grads, b.grads) < 1e-3, "\(what): parameter gradients")
        #expect(maxDifference(a.state, b.state) < 1e-5, "\(what): running statistics")
    }

    @Test func conversionRoundTrips() {
        let shape = FeatureShape(channels: 32, height: 3, width: 5)
        let v = (0..<2 * shape.count).map(Float.init)
        let b = convert(v, .planar, .blocked16, shape, 2)
        // channel 17 of sample 1 at pixel (1, 2): block 1, lane 1
        #expect(b[shape.count + (1 * 15 + 7) * 16 + 1] == v[shape.count + 17 * 15 + 7])
        #expect(convert(b, .blocked16, .planar, shape, 2) == v)
    }

    @Test(arguments: [Mode.train, Mode.eval])
    func batchNorm(mode: Mode) throws {
        try expectSame({ BatchNorm2d() }, input: FeatureShape(channels: 32, height: 5, width: 6), mode: mode)
    }

    /// BatchNorm with the activation after it absorbed, against the two separate layers (planar),
    /// and on blocked16 against planar: forward, dx, γ/β gradients, running statistics; training
    /// and eval mode, and frozen.
    @Test(arguments: LayerGradientTests.activations, [Mode.train, Mode.eval])
    func fusedBatchNormMatchesSeparateLayers(activation: FusedActivation, mode: Mode) throws {
        let shape = FeatureShape(channels: 32, height: 5, width: 6)
        // γ, β ~ N(3, 2): pre-activations on both sides of 0 and of 6.
        let wide: (inout RandomSource) -> Float = { 3 + $0.nextGaussian() * 2 }
        for frozen in [false, true] {
            func variant(fused: Bool, _ layout: ActivationLayout) throws -> Result {
                try run({ LayerGradientTests.batchNormThen(activation, fused: fused, frozen: frozen) }, input: shape, batch: 3,
                        mode: mode, layout: layout, parameterInit: wide)
            }
            let separate = try variant(fused: false, .planar)
            let fused = try variant(fused: true, .planar)
            expectSame(separate, fused, "fused vs separate (frozen: \(frozen))")
            expectSame(separate, try variant(fused: false, .blocked16), "separate, blocked vs planar (frozen: \(frozen))")
            expectSame(fused, try variant(fused: true, .blocked16), "fused, blocked vs planar (frozen: \(frozen))")
            #expect(activation == .silu ? separate.y.contains { $0 < 0 } : separate.y.contains(0))
            #expect(separate.y.contains { $0 > 0.5 })
            if activation == .relu6 { #expect(separate.y.contains(6)) }
            #expect(separate.dx.contains { $0 != 0 })
            #expect(separate.grads.allSatisfy { $0 == 0 } == frozen)
        }
    }

    /// Overlapping and leftover-row windows (gradient scattered into a zeroed dx) and windows
    /// that tile the input (8×6 with 2×2, 9×6 with 3×3: dx written in one pass; dx starts as NaN).
    @Test(arguments: [(2, 2, 0, 7), (2, 2, 0, 8), (3, 3, 0, 9), (3, 2, 1, 7), (3, 1, 1, 7)])
    func maxPool(kernel: Int, stride: Int, padding: Int, height: Int) throws {
        try expectSame({ MaxPool2d(kernel: kernel, stride: stride, padding: padding) },
                       input: FeatureShape(channels: 16, height: height, width: 6), distinct: true)
    }

    @Test func globalAvgPool() throws {
        try expectSame({ GlobalAvgPool() }, input: FeatureShape(channels: 32, height: 4, width: 5))
    }

    /// Squeeze-and-excitation reads and writes blocked16; its gate (global pool, two 1×1
    /// convolutions on [C, 1, 1]) works on either backend.
    @Test(arguments: ["openblas", "onednn"], [16, 6])
    func squeezeExcitation(backend: String, squeeze: Int) throws {
        let b = try ConvolutionBackends.named(backend)
        try expectSame({ SqueezeExcitation(channels: 32, squeezeChannels: squeeze, backend: b) },
                       input: FeatureShape(channels: 32, height: 4, width: 5))
        let se = SqueezeExcitation(channels: 32, squeezeChannels: squeeze, backend: b)
        _ = try se.configure(input: FeatureShape(channels: 32, height: 4, width: 5))
        #expect(se.negotiate(offered: .blocked16, allowBlocked: true) == (.blocked16, .blocked16))
        #expect(se.negotiate(offered: .blocked16, allowBlocked: false) == (.planar, .planar))
    }

    @Test func activations() throws {
        try expectSame({ ReLU() }, input: FeatureShape(channels: 16, height: 3, width: 3))
        try expectSame({ ReLU6() }, input: FeatureShape(channels: 16, height: 3, width: 3))
        try expectSame({ SiLU() }, input: FeatureShape(channels: 16, height: 3, width: 3))
    }

    /// A blocked convolution (nChw16c in and out) against the planar one.
    @Test(arguments: [(16, 32, 1, 3, 1, 1), (32, 16, 1, 1, 1, 0), (16, 16, 16, 3, 2, 1), (32, 32, 1, 3, 2, 1)])
    func convolution(c: (Int, Int, Int, Int, Int, Int)) throws {
        let (_, cout, groups, k, s, p) = c
        try expectSame({ Conv2d(outChannels: cout, kernel: k, stride: s, padding: p, groups: groups, backend: OneDNNBackend()) },
                       input: FeatureShape(channels: c.0, height: 7, width: 6))
    }

    /// refcnn on oneDNN: planar input into the first convolution, blocked from there to the
    /// global pool, no conversion anywhere.
    @Test func refcnnRunsBlockedEndToEnd() throws {
        let net = try Architectures.build(ModelSpec(architecture: "refcnn", channels: 3, imageSize: 32, classes: 10),
                                          backend: OneDNNBackend())
        #expect(net.conversions.isEmpty)
        #expect(net.layouts.first! == (.planar, .blocked16))
        #expect(net.layouts.filter { $0 == (.blocked16, .blocked16) }.count == 16)
        let portable = try Architectures.build(ModelSpec(architecture: "refcnn", channels: 3, imageSize: 32, classes: 10))
        #expect(portable.layouts.allSatisfy { $0 == (.planar, .planar) })
    }

    /// resnet18: blocked from the stem's output to the global pool, residual blocks included.
    @Test func resnet18RunsBlockedEndToEnd() throws {
        let net = try Architectures.build(ModelSpec(architecture: "resnet18", channels: 3, imageSize: 32, classes: 10),
                                          backend: OneDNNBackend())
        #expect(net.conversions.isEmpty)
        #expect(net.layouts.dropFirst().dropLast(2).allSatisfy { $0 == (.blocked16, .blocked16) })
    }

    /// The zoo on oneDNN (small input): no conversion inside the network; every convolution,
    /// BatchNorm and squeeze-and-excitation whose channel count 16 divides works on blocked16
    /// (the others, e.g. 24 and 40 channels, planar: the convolutions around them convert as part
    /// of their oneDNN primitive); every BatchNorm directly followed by ReLU/ReLU6/SiLU computes
    /// it — and only those (not the projections' BatchNorm, not ResNet's BN before the add).
    @Test(arguments: [("refcnn", 5, 5), ("resnet18", 9, 20), ("mobilenetv2", 35, 52), ("efficientnet-b0", 33, 49)])
    func zooRunsBlockedAndFused(name: String, fused: Int, batchNorms: Int) throws {
        let spec = ModelSpec(architecture: name, channels: 3, imageSize: 32, classes: 10)
        let net = try Architectures.build(spec, backend: OneDNNBackend())
        #expect(net.conversions.isEmpty)
        #expect(net.fusedBatchNormCount == fused)
        var counts = (bn: 0, conv: 0, se: 0, blocked: 0)
        func visit(_ l: Layer, after previous: Layer?) {
            if let composite = l as? CompositeLayer {
                var prev: Layer? = nil
                for s in composite.sublayers { visit(s.layer, after: prev); prev = s.layer }
            } else if let bn = l as? BatchNorm2d {
                counts.bn += 1
                #expect(bn.layout == ActivationLayout.blocked(if: true, bn.shape))
                if bn.layout == .blocked16 { counts.blocked += 1 }
            } else if let conv = l as? Conv2d {
                counts.conv += 1
                #expect(conv.layouts.output == (conv.outChannels % 16 == 0 ? .blocked16 : .planar))
            } else if let act = l as? AbsorbableActivation {
                #expect(act.absorbed == (previous is BatchNorm2d))
            }
            if let se = l as? SqueezeExcitation {
                counts.se += 1
                #expect(se.layout == (se.channels % 16 == 0 ? .blocked16 : .planar))
            }
        }
        var prev: Layer? = nil
        for l in net.layers { visit(l.layer, after: prev); prev = l.layer }
        #expect(counts.bn == batchNorms)
        #expect(counts.blocked > batchNorms / 2)
        #expect(counts.se == (name == "efficientnet-b0" ? 16 : 0))
        let separate = try Architectures.build(spec, backend: OneDNNBackend(), fuseActivations: false)
        #expect(separate.fusedBatchNormCount == 0)
        #expect(separate.conversions.isEmpty)
    }

    /// A block whose sub-layers cannot agree (a planar-only layer inside) falls back to planar
    /// as a whole, and the network converts once in front of it.
    @Test func compositeFallsBackToPlanar() throws {
        let block = Sequential([NamedLayer("0", Conv2d(outChannels: 16, kernel: 3, padding: 1, backend: OneDNNBackend())),
                                NamedLayer("1", Dropout(p: 0.1)),
                                NamedLayer("2", Conv2d(outChannels: 16, kernel: 1, backend: OneDNNBackend()))])
        _ = try block.configure(input: FeatureShape(channels: 16, height: 4, width: 4))
        #expect(block.negotiate(offered: .blocked16, allowBlocked: true) == (.planar, .planar))
        let chained = Sequential([NamedLayer("0", Conv2d(outChannels: 16, kernel: 3, padding: 1, backend: OneDNNBackend())),
                                  NamedLayer("1", BatchNorm2d()), NamedLayer("2", ReLU())])
        _ = try chained.configure(input: FeatureShape(channels: 16, height: 4, width: 4))
        #expect(chained.negotiate(offered: .blocked16, allowBlocked: true) == (.blocked16, .blocked16))
        #expect(chained.negotiate(offered: .planar, allowBlocked: true) == (.planar, .blocked16))
    }
}
