import Testing
@testable import Model
import Support

/// The oneDNN convolution backend against the portable im2col + OpenBLAS one (the reference):
/// every convolution kind, forward and both backward passes, whole zoo models, and finite
/// differences through the same `GradientCheck` harness.
@Suite struct OneDNNBackendTests {
    /// Direct convolutions: the backend equivalence below is about layouts and primitives, not
    /// about Winograd's different rounding (checked on its own, `autoAlgorithmIsCloseToDirect`).
    static let onednn = OneDNNBackend(algorithm: .direct)

    /// ‖a − b‖ / max(‖a‖, ‖b‖).
    func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count)
        var d = 0.0, na = 0.0, nb = 0.0
        for i in a.indices {
            d += Double(a[i] - b[i]) * Double(a[i] - b[i]); na += Double(a[i]) * Double(a[i]); nb += Double(b[i]) * Double(b[i])
        }
        return d.squareRoot() / max(na.squareRoot(), nb.squareRoot(), 1e-12)
    }

    struct Passes { var y: [Float]; var dx: [Float]; var dWeight: [Float]; var dBias: [Float] }

    /// Forward, backward-data and backward-weights of one geometry through `backend`'s kernel on
    /// fixed random data; dWeight and dBias start at 0.5 to check that they accumulate.
    func run(_ backend: ConvolutionBackend, _ geometry: ConvGeometry, batch: Int, preparedBatch: Int? = nil, bias: Bool) -> Passes {
        var g = geometry
        g.bias = bias
        var rng = RandomSource(seed: 11)
        let x = (0..<batch * g.input.count).map { _ in rng.nextGaussian() }
        let w = (0..<g.weightCount).map { _ in rng.nextGaussian() * 0.3 }
        let b = (0..<g.outChannels).map { _ in rng.nextGaussian() }
        let dy = (0..<batch * g.output.count).map { _ in rng.nextGaussian() }
        var y = [Float](repeating: .nan, count: batch * g.output.count)
        var dx = [Float](repeating: .nan, count: batch * g.input.count)
        var dW = [Float](repeating: 0.5, count: g.weightCount), dB = [Float](repeating: 0.5, count: g.outChannels)
        let kernel = backend.makeKernel(g, maxBatch: preparedBatch ?? batch)
        b.withUnsafeBufferPointer { bp in
            kernel.forward(x: x, weight: w, bias: bias ? bp.baseAddress : nil, y: &y, batch: batch)
        }
        kernel.backwardData(dy: dy, weight: w, dx: &dx, batch: batch)
        if bias {
            kernel.backwardWeights(x: x, dy: dy, dWeight: &dW, dBias: &dB, batch: batch)
        } else {
            kernel.backwardWeights(x: x, dy: dy, dWeight: &dW, dBias: nil, batch: batch)
        }
        return Passes(y: y, dx: dx, dWeight: dW, dBias: dB)
    }

    /// Every pass of `got` within 1e-5 (relative) of `ref`.
    func expectSame(_ got: Passes, _ ref: Passes, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(relativeDifference(got.y, ref.y) < 1e-5, "forward", sourceLocation: sourceLocation)
        #expect(relativeDifference(got.dx, ref.dx) < 1e-5, "backward data", sourceLocation: sourceLocation)
        #expect(relativeDifference(got.dWeight, ref.dWeight) < 1e-5, "backward weights", sourceLocation: sourceLocation)
        #expect(relativeDifference(got.dBias, ref.dBias) < 1e-5, "bias gradient", sourceLocation: sourceLocation)
    }

    /// (in, out, groups, kernel, stride, padding): dense 3×3 (stride 1 and 2), pointwise, 5×5,
    /// 7×7 stride 2 (resnet stem), 2×2 without padding, grouped, depthwise, strided 1×1.
    static let cases = [(3, 5, 1, 3, 1, 1), (16, 32, 1, 3, 1, 1), (8, 16, 1, 3, 2, 1), (6, 10, 1, 1, 1, 0),
                        (3, 5, 1, 5, 2, 2), (3, 8, 1, 7, 2, 3), (3, 5, 1, 2, 2, 0),
                        (4, 6, 2, 3, 1, 1), (6, 6, 3, 3, 2, 1), (16, 16, 16, 3, 1, 1), (16, 16, 16, 3, 2, 1),
                        (8, 8, 8, 5, 2, 2), (6, 4, 2, 1, 2, 0)]

    @Test(arguments: cases, [true, false])
    func matchesOpenBLAS(c: (Int, Int, Int, Int, Int, Int), bias: Bool) {
        let (cin, cout, groups, k, s, p) = c
        let g = ConvGeometry(input: FeatureShape(channels: cin, height: 9, width: 8), outChannels: cout, kernel: k,
                             stride: s, padding: p, groups: groups)
        let ref = run(ConvolutionBackends.portable, g, batch: 3, bias: bias)
        let got = run(Self.onednn, g, batch: 3, bias: bias)
        expectSame(got, ref)
        #expect(bias || got.dBias.allSatisfy { $0 == 0.5 })
    }

    /// Small planes (the last stages of the zoo models at 32×32): (in, out, groups, kernel, stride, padding, size).
    @Test(arguments: [(8, 8, 8, 3, 1, 1, 1), (8, 8, 8, 3, 2, 1, 2), (8, 8, 8, 5, 2, 2, 2), (8, 8, 8, 5, 1, 2, 1),
                      (8, 8, 8, 5, 2, 2, 1), (16, 4, 1, 1, 1, 0, 1), (4, 16, 1, 1, 1, 0, 1), (8, 16, 1, 3, 1, 1, 2),
                      (8, 16, 1, 3, 2, 1, 2), (8, 16, 1, 1, 2, 0, 2), (8, 8, 8, 3, 2, 1, 1), (8, 16, 1, 3, 2, 1, 1)])
    func smallPlanesMatchOpenBLAS(c: (Int, Int, Int, Int, Int, Int, Int)) {
        let (cin, cout, groups, k, s, p, size) = c
        let g = ConvGeometry(input: FeatureShape(channels: cin, height: size, width: size), outChannels: cout, kernel: k,
                             stride: s, padding: p, groups: groups)
        let ref = run(ConvolutionBackends.portable, g, batch: 3, bias: true)
        let got = run(Self.onednn, g, batch: 3, bias: true)
        expectSame(got, ref)
    }

    /// A batch smaller than the prepared maximum (the last batch of an epoch) gets its own primitives.
    @Test func smallerBatchThanPrepared() {
        let g = ConvGeometry(input: FeatureShape(channels: 8, height: 6, width: 6), outChannels: 16, kernel: 3,
                             stride: 1, padding: 1)
        let ref = run(ConvolutionBackends.portable, g, batch: 2, bias: true)
        let got = run(Self.onednn, g, batch: 2, preparedBatch: 5, bias: true)
        #expect(relativeDifference(got.y, ref.y) < 1e-5)
        #expect(relativeDifference(got.dx, ref.dx) < 1e-5)
        #expect(relativeDifference(got.dWeight, ref.dWeight) < 1e-5)
    }

    /// Winograd (3×3 stride 1) against direct: close, and reported as not bit-identical only
    /// within ~1e-5; other shapes silently run direct.
    @Test func winogradIsCloseToDirect() {
        let g = ConvGeometry(input: FeatureShape(channels: 32, height: 12, width: 12), outChannels: 32, kernel: 3,
                             stride: 1, padding: 1)
        let direct = run(Self.onednn, g, batch: 2, bias: true)
        let wino = run(OneDNNBackend(algorithm: .winograd), g, batch: 2, bias: true)
        #expect(relativeDifference(wino.y, direct.y) < 1e-4)
        #expect(relativeDifference(wino.dx, direct.dx) < 1e-4)
        #expect(relativeDifference(wino.dWeight, direct.dWeight) < 1e-4)
        let strided = ConvGeometry(input: FeatureShape(channels: 8, height: 9, width: 9), outChannels: 8, kernel: 3,
                                   stride: 2, padding: 1)
        let k = OneDNNBackend(algorithm: .winograd).makeKernel(strided, maxBatch: 1) as! OneDNNConvKernel
        #expect(!k.winograd.forward && !k.winograd.backwardData && !k.winograd.backwardWeights)
    }

    /// `auto` (the default) runs Winograd on the 3×3 stride-1 layers with ≥ 16 input channels and
    /// an output of at least 8×8, direct elsewhere; a whole training step stays close to direct.
    @Test(arguments: ["refcnn", "resnet18"]) func autoAlgorithmIsCloseToDirect(name: String) throws {
        let auto = OneDNNBackend()
        #expect(auto.algorithm == .auto)
        let picks = [(3, 32, 32), (32, 32, 32), (64, 16, 16), (256, 4, 4), (64, 8, 8)].map { c, h, w in
            ConvAlgorithm.auto.runsWinograd(ConvGeometry(input: FeatureShape(channels: c, height: h, width: w),
                                                         outChannels: c, kernel: 3, stride: 1, padding: 1))
        }
        #expect(picks == [false, true, true, false, true])
        let spec = ModelSpec(architecture: name, channels: 3, imageSize: 32, classes: 5)
        let direct = try step(spec, Self.onednn, batch: 3, mode: .train)
        let got = try step(spec, auto, batch: 3, mode: .train)
        // oneDNN 2.6 has Winograd kernels for AVX-512 only (elsewhere it runs direct).
        let probe = auto.makeKernel(ConvGeometry(input: FeatureShape(channels: 32, height: 16, width: 16), outChannels: 32,
                                                 kernel: 3, stride: 1, padding: 1), maxBatch: 2) as! OneDNNConvKernel
        if probe.winograd.forward { #expect(got.logits != direct.logits, "Winograd ran (its rounding differs from direct)") }
        #expect(relativeDifference(got.logits, direct.logits) < 1e-4, "logits")
        #expect(relativeDifference(got.grads, direct.grads) < 1e-2, "gradients")
    }

    /// Parameter gradients add up over backward passes until `zeroGradients` (gradient
    /// accumulation), although the first backward after zeroing writes them instead of adding
    /// (`ParameterStore.gradientEpoch`): two passes give twice one, and after zeroing one again.
    @Test(arguments: ["onednn", "openblas"]) func gradientsAccumulateUntilZeroed(backend: String) throws {
        let spec = ModelSpec(architecture: "resnet18", channels: 3, imageSize: 16, classes: 4)
        let net = try Architectures.build(spec, backend: backend == "onednn" ? OneDNNBackend() : ConvolutionBackends.portable)
        net.initializeParameters(seed: 5)
        net.prepare(maxBatch: 2)
        var rng = RandomSource(seed: 9)
        let x = (0..<2 * net.inputShape.count).map { _ in rng.nextGaussian() }
        var d = [Float](repeating: 0, count: 2 * spec.classes)
        let logits = Array(UnsafeBufferPointer(start: net.forward(x, batch: 2, mode: .eval), count: 2 * spec.classes))
        _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: [1, 3], batch: 2, classes: spec.classes, gradScale: 0.5, dLogits: &d)
        func backward() -> [Float] {
            net.backward(x, dLogits: d, batch: 2, mode: .eval)
            return Array(net.store.gradientBuffer)
        }
        net.store.zeroGradients()
        let once = backward()
        let twice = backward()
        net.store.zeroGradients()
        let again = backward()
        #expect(once.contains { $0 != 0 })
        #expect(relativeDifference(twice, once.map { 2 * $0 }) < 1e-6)
        #expect(again == once)
    }

    @Test func backendAndAlgorithmNamesAreChecked() throws {
        #expect(try ConvolutionBackends.named("onednn", algorithm: "winograd").name == "onednn")
        #expect(try ConvolutionBackends.named("openblas").name == "openblas")
        #expect(throws: ModelError.self) { try ConvolutionBackends.named("cudnn") }
        #expect(throws: ModelError.self) { try ConvolutionBackends.named("onednn", algorithm: "fft") }
        #expect(throws: ModelError.self) { try ConvolutionBackends.named("openblas", algorithm: "winograd") }
        #expect(throws: ModelError.self) { try ConvolutionBackends.named("onednn", weights: "nhwc") }
        #expect((try ConvolutionBackends.named("onednn") as? OneDNNBackend)?.blockedWeights == true)
        #expect((try ConvolutionBackends.named("onednn", weights: "oihw") as? OneDNNBackend)?.blockedWeights == false)
    }

    // MARK: Finite differences through the oneDNN kernels

    func expectClose(_ reports: [GradientCheck.Report], tolerance: Double = 1e-2) {
        #expect(!reports.isEmpty)
        for r in reports { #expect(r.relativeError < tolerance, "\(r)") }
    }

    @Test(arguments: [(3, 4, 1, 3, 1, 1), (3, 4, 1, 3, 2, 1), (3, 4, 1, 1, 1, 0), (3, 4, 1, 5, 2, 2),
                      (4, 6, 2, 3, 1, 1), (4, 4, 4, 3, 2, 1), (6, 4, 2, 1, 2, 0)])
    func gradientCheck(c: (Int, Int, Int, Int, Int, Int)) throws {
        let (cin, cout, groups, k, s, p) = c
        let layer = Conv2d(outChannels: cout, kernel: k, stride: s, padding: p, groups: groups, backend: Self.onednn)
        expectClose(try GradientCheck(layer: layer, input: FeatureShape(channels: cin, height: 7, width: 6), batch: 2).run())
    }

    // MARK: Whole zoo models

    /// Logits and every parameter gradient (in canonical order) of one training step, through `backend`.
    func step(_ spec: ModelSpec, _ backend: ConvolutionBackend, batch: Int, mode: Mode,
              fuse: Bool = true) throws -> (logits: [Float], grads: [Float]) {
        let net = try Architectures.build(spec, backend: backend, fuseActivations: fuse)
        net.initializeParameters(seed: 3)
        net.prepare(maxBatch: batch)
        var rng = RandomSource(seed: 8)
        let x = (0..<batch * net.inputShape.count).map { _ in rng.nextGaussian() }
        let labels = (0..<batch).map { Int32($0 % spec.classes) }
        let context = StepContext(seed: 2, step: 1)
        let logits = Array(UnsafeBufferPointer(start: net.forward(x, batch: batch, mode: mode, context: context),
                                               count: batch * spec.classes))
        var d = [Float](repeating: 0, count: batch * spec.classes)
        _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: spec.classes,
                                         gradScale: 1 / Float(batch), dLogits: &d)
        net.store.zeroGradients()
        net.backward(x, dLogits: d, batch: batch, mode: mode)
        return (logits, net.store.canonicalGradients)
    }

    /// In training mode at 32×32 the ResNets, MobileNetV2 and EfficientNet end on 1×1 planes where
    /// BatchNorm normalises 3 values per channel, which amplifies float rounding differences
    /// (resnet18 sat at 1.5–1.8e-3 there), so those run at 64×64 with batch 4 (eval mode, whose
    /// BatchNorm is affine, at 32×32).
    @Test(arguments: ["refcnn", "cnn-small", "resnet18", "resnet50", "mobilenetv2", "efficientnet-b0"], [Mode.train, Mode.eval])
    func zooModelMatchesOpenBLAS(name: String, mode: Mode) throws {
        let deep = mode == .train && ["resnet50", "mobilenetv2", "efficientnet-b0"].contains(name)
        let large = deep || (mode == .train && name == "resnet18")
        let spec = ModelSpec(architecture: name, channels: 3, imageSize: large ? 64 : 32, classes: 5)
        let ref = try step(spec, ConvolutionBackends.portable, batch: large ? 4 : 3, mode: mode)
        let got = try step(spec, Self.onednn, batch: large ? 4 : 3, mode: mode)
        #expect(relativeDifference(got.logits, ref.logits) < 1e-4, "logits")
        // The deep models' gradients pass through ~50 training-mode BatchNorm backward steps,
        // each amplifying rounding differences; their finite-difference checks are in
        // NetworkGradientTests (both backends).
        #expect(relativeDifference(got.grads, ref.grads) < (deep ? 5e-2 : 1e-3), "gradients")
    }

    /// BatchNorm with its activation absorbed against the separate layers, whole models on
    /// oneDNN (blocked16) and OpenBLAS (planar): the same arithmetic in the same order, so the
    /// results agree to rounding even through the deep models' training-mode BatchNorms.
    @Test(arguments: ["refcnn", "resnet18", "mobilenetv2", "efficientnet-b0"], ["onednn", "openblas"])
    func fusedModelMatchesSeparateLayers(name: String, backend: String) throws {
        let spec = ModelSpec(architecture: name, channels: 3, imageSize: 32, classes: 5)
        let b = try ConvolutionBackends.named(backend)
        let separate = try step(spec, b, batch: 3, mode: .train, fuse: false)
        let fused = try step(spec, b, batch: 3, mode: .train)
        #expect(relativeDifference(fused.logits, separate.logits) < 1e-5, "logits")
        #expect(relativeDifference(fused.grads, separate.grads) < 1e-4, "gradients")
    }
}
