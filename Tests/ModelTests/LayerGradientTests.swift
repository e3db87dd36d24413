import Testing
@testable import Model
import Support

/// Every layer's backward against central finite differences (relative error < 1e-2 in Float).
@Suite struct LayerGradientTests {
    func expectClose(_ reports: [GradientCheck.Report], tolerance: Double = 1e-2) {
        #expect(!reports.isEmpty)
        for r in reports { #expect(r.relativeError < tolerance, "\(r)") }
    }

    @Test(arguments: [(3, 1, 1), (3, 2, 1), (1, 1, 0), (5, 2, 2), (3, 1, 0)])
    func conv2d(kernel: Int, stride: Int, padding: Int) throws {
        let layer = Conv2d(outChannels: 4, kernel: kernel, stride: stride, padding: padding)
        expectClose(try GradientCheck(layer: layer, input: FeatureShape(channels: 3, height: 7, width: 6), batch: 2).run())
    }

    @Test func conv2dWithoutBias() throws {
        let layer = Conv2d(outChannels: 3, kernel: 3, padding: 1, bias: false)
        let reports = try GradientCheck(layer: layer, input: FeatureShape(channels: 2, height: 5, width: 5), batch: 3).run()
        #expect(reports.count == 2)   // dx and weight only
        expectClose(reports)
    }

    @Test(arguments: [Mode.train, Mode.eval])
    func batchNorm(mode: Mode) throws {
        let layer = BatchNorm2d()
        expectClose(try GradientCheck(layer: layer, input: FeatureShape(channels: 3, height: 4, width: 5), batch: 4,
                                      mode: mode, eps: 3e-3).run())
    }

    @Test func batchNormOnFeatures() throws {
        expectClose(try GradientCheck(layer: BatchNorm2d(), input: FeatureShape(features: 6), batch: 8, eps: 3e-3).run())
    }

    @Test func relu() throws {
        // Keep inputs away from the kink at 0.
        let check = GradientCheck(layer: ReLU(), input: FeatureShape(channels: 2, height: 3, width: 3), batch: 3) { rng, n in
            (0..<n).map { _ in let v = rng.nextGaussian(); return v >= 0 ? v + 0.1 : v - 0.1 }
        }
        expectClose(try check.run())
    }

    @Test(arguments: [(2, 2), (3, 2), (3, 1)])
    func maxPool(kernel: Int, stride: Int) throws {
        // Distinct values (gaps ≫ eps) so no perturbation changes which input is the maximum.
        let check = GradientCheck(layer: MaxPool2d(kernel: kernel, stride: stride),
                                  input: FeatureShape(channels: 2, height: 7, width: 6), batch: 2) { rng, n in
            rng.permutation(n).map { Float($0) * 0.1 }
        }
        expectClose(try check.run())
    }

    @Test func globalAvgPool() throws {
        expectClose(try GradientCheck(layer: GlobalAvgPool(), input: FeatureShape(channels: 3, height: 4, width: 5), batch: 2).run())
    }

    @Test func linear() throws {
        expectClose(try GradientCheck(layer: Linear(outFeatures: 5), input: FeatureShape(channels: 3, height: 2, width: 2), batch: 4).run())
    }

    @Test(arguments: [Mode.train, Mode.eval])
    func dropout(mode: Mode) throws {
        expectClose(try GradientCheck(layer: Dropout(p: 0.3), input: FeatureShape(features: 20), batch: 3, mode: mode).run())
    }

    /// The one-pass batch statistics keep their precision when the mean dwarfs the spread
    /// (x = 100 + N(0, 0.01²), where E[x²] − E[x]² in Float would be noise): normalised output
    /// and running mean against Double.
    @Test(arguments: [ActivationLayout.planar, .blocked16])
    func batchNormStatisticsWithALargeMean(layout: ActivationLayout) throws {
        let shape = FeatureShape(channels: 16, height: 5, width: 7), batch = 3
        let bn = BatchNorm2d()
        _ = try bn.configure(input: shape)
        #expect(bn.negotiate(offered: layout, allowBlocked: true).output == layout)
        let store = ParameterStore(parameterSpecs: bn.parameterSpecs, stateSpecs: bn.stateSpecs)
        bn.bind(ParameterBinding(parameters: store.slots.map { store.parameters + $0.range.lowerBound },
                                 gradients: store.slots.map { store.gradients + $0.range.lowerBound },
                                 state: store.stateSlots.map { store.state + $0.range.lowerBound }))
        store.parameters.update(repeating: 1, count: shape.channels)                     // γ = 1
        (store.parameters + shape.channels).update(repeating: 0, count: shape.channels)  // β = 0
        store.state.update(repeating: 0, count: shape.channels)
        (store.state + shape.channels).update(repeating: 1, count: shape.channels)
        bn.prepare(maxBatch: batch)
        var rng = RandomSource(seed: 6)
        let x = (0..<batch * shape.count).map { _ in 100 + rng.nextGaussian() * 0.01 }
        var y = [Float](repeating: .nan, count: x.count)
        bn.forward(x, &y, batch: batch, mode: .train, context: StepContext())
        // Channel c's elements: the same positions in either layout, found by converting indices.
        let index = (0..<x.count).map(Float.init)
        var where_ = [Float](repeating: 0, count: x.count)
        LayoutConversion.convert(index, from: .planar, to: layout, &where_, shape: shape, batch: batch)
        var worst: Float = 0
        for c in 0..<shape.channels {
            let positions = (0..<batch).flatMap { n in (0..<shape.plane).map { n * shape.count + c * shape.plane + $0 } }
                .map { p in where_.firstIndex(of: Float(p))! }
            let values = positions.map { Double(x[$0]) }
            let m = Double(values.count), mean = values.reduce(0, +) / m
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / m
            for p in positions { worst = max(worst, abs(y[p] - Float((Double(x[p]) - mean) / (variance + 1e-5).squareRoot()))) }
            #expect(abs(Double(store.state[c]) - 0.1 * mean) < 1e-5)
        }
        #expect(worst < 5e-3, "max |y − exact| \(worst)")
    }

    // MARK: BatchNorm fused with the activation after it

    /// BatchNorm2d followed by `activation`, as a network builds it: with `fused` the BatchNorm
    /// absorbs the activation (which becomes a pass-through); `frozen` freezes the BatchNorm.
    static func batchNormThen(_ activation: FusedActivation, fused: Bool, frozen: Bool = false) -> Sequential {
        let bn = BatchNorm2d()
        bn.frozen = frozen
        let act: Layer = switch activation {
        case .relu: ReLU()
        case .relu6: ReLU6()
        case .silu: SiLU()
        }
        let pair = Sequential([NamedLayer("0", bn), NamedLayer("1", act)])
        if fused { pair.fuseActivations() }
        #expect(bn.activation == (fused ? activation : nil))
        #expect((act as! AbsorbableActivation).absorbed == fused)
        return pair
    }

    static let activations: [FusedActivation] = [.relu, .relu6, .silu]

    /// The fused layer's dx, γ and β gradients (planar and blocked16; in eval mode on inputs
    /// spread wide enough to reach ReLU6's upper kink through the running statistics).
    @Test(arguments: activations, [Mode.train, Mode.eval])
    func fusedBatchNorm(activation: FusedActivation, mode: Mode) throws {
        for layout in [ActivationLayout.planar, .blocked16] {
            let channels = layout == .blocked16 ? 16 : 3
            // Eval mode: γ moves every pre-activation of its channel by xhat·eps, so a smaller
            // step keeps kinks out of it.
            let check = GradientCheck(layer: Self.batchNormThen(activation, fused: true),
                                      input: FeatureShape(channels: channels, height: 3, width: 5), batch: 4, mode: mode,
                                      eps: mode == .eval ? 1e-3 : 3e-3,
                                      makeInput: { rng, n in (0..<n).map { _ in rng.nextGaussian() * 4 } },
                                      skipKinks: activation != .silu, layout: layout)
            let reports = try check.run()
            #expect(reports.map { $0.name.split(separator: " ")[0] } == ["sequential.dx", "sequential.0.weight", "sequential.0.bias"])
            expectClose(reports)
        }
    }

    /// A frozen BatchNorm (eval statistics, no γ/β gradients) fused: dx only.
    @Test(arguments: activations, [ActivationLayout.planar, .blocked16])
    func fusedFrozenBatchNorm(activation: FusedActivation, layout: ActivationLayout) throws {
        let channels = layout == .blocked16 ? 16 : 3
        let check = GradientCheck(layer: Self.batchNormThen(activation, fused: true, frozen: true),
                                  input: FeatureShape(channels: channels, height: 4, width: 3), batch: 3, mode: .train, eps: 3e-3,
                                  makeInput: { rng, n in (0..<n).map { _ in rng.nextGaussian() * 5 } },
                                  skipKinks: activation != .silu, layout: layout)
        let dx = try check.run().filter { $0.name.hasPrefix("sequential.dx") }
        #expect(dx.count == 1)
        expectClose(dx)
    }
}
