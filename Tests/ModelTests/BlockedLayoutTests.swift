import Testing
@testable import Model
import Support

/// The blocked (nChw16c) activation layout: each layout-native layer gives, after converting,
/// what it gives on the planar layout (forward, dx and parameter gradients), and a oneDNN
/// network keeps the layout end to end without conversions.
@Suite struct BlockedLayoutTests {
    func maxDifference(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

    func convert(_ v: [Float], _ from: ActivationLayout, _ to: ActivationLayout, _ shape: FeatureShape, _ batch: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: v.count)
        LayoutConversion.convert(v, from: from, to: to, &out, shape: shape, batch: batch)
        return out
    }

    struct Result { var y: [Float]; var dx: [Float]; var grads: [Float]; var state: [Float] }

    /// Forward + backward of `layer` (made fresh by `make`) on planar data, in `layout`; the
    /// results are converted back to planar.
    func run(_ make: () -> Layer, input: FeatureShape, batch: Int, mode: Mode, layout: ActivationLayout,
             distinct: Bool = false) throws -> Result {
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
        for i in 0..<store.count { store.parameters[i] = 1 + rng.nextGaussian() * 0.3 }
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
        #expect(maxDifference(planar.y, blocked.y) < 1e-4, "forward")
        #expect(maxDifference(planar.dx, blocked.dx) < 1e-4, "dx")
        #expect(maxDifference(planar.grads, blocked.grads) < 1e-3, "parameter gradients")
        #expect(maxDifference(planar.state, blocked.state) < 1e-5, "running statistics")
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

    @Test(arguments: [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
    func maxPool(kernel: Int, stride: Int, padding: Int) throws {
        try expectSame({ MaxPool2d(kernel: kernel, stride: stride, padding: padding) },
                       input: FeatureShape(channels: 16, height: 7, width: 6), distinct: true)
    }

    @Test func globalAvgPool() throws {
        try expectSame({ GlobalAvgPool() }, input: FeatureShape(channels: 32, height: 4, width: 5))
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
