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
