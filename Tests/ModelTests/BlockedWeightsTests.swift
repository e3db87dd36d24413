import Testing
import Foundation
@testable import Model
import Support

/// oneDNN convolution weights kept in the store in the forward primitive's blocked format
/// (`ParameterLayout`): no weight reorder in forward or for the weight gradient, and canonical
/// (OIHW) values wherever they leave the store: initialisation, checkpoints, exports.
@Suite struct BlockedWeightsTests {
    func convolutions(_ net: Network) -> [Conv2d] {
        func visit(_ l: Layer) -> [Conv2d] {
            if let c = l as? Conv2d { return [c] }
            return (l as? CompositeLayer)?.sublayers.flatMap { visit($0.layer) } ?? []
        }
        return net.layers.flatMap { visit($0.layer) }
    }

    /// At the benchmark sizes every convolution with 16-divisible channels keeps its weights
    /// blocked and the forward pass reads them as they are; dense convolutions' weight gradient
    /// is written in place too (oneDNN's depthwise weight-gradient kernels want another format
    /// at some shapes and reorder); backward-data reorders into its own format.
    @Test(arguments: [("refcnn", 32, 64), ("resnet18", 64, 32), ("mobilenetv2", 64, 32), ("efficientnet-b0", 64, 32), ("resnet18", 32, 3)])
    func forwardAndWeightGradientNeedNoReorder(name: String, size: Int, batch: Int) throws {
        let net = try Architectures.build(ModelSpec(architecture: name, channels: 3, imageSize: size, classes: 10), backend: OneDNNBackend())
        net.prepare(maxBatch: batch)
        var blocked = 0
        for conv in convolutions(net) {
            let k = conv.convolutionKernel as! OneDNNConvKernel
            let offset = conv.weightGradient! - net.store.gradients
            let slot = net.store.slots.first { $0.range.lowerBound == offset }
            let g = conv.geometry!
            guard let layout = k.weightLayout else {
                #expect(g.outChannels % 16 != 0 || g.groupInChannels % 16 != 0 && g.groupInChannels > 1, "\(g) keeps OIHW")
                continue
            }
            blocked += 1
            #expect(slot?.layout?.name == layout.name)
            let reorders = k.weightReorders(dWeight: conv.weightGradient!)
            #expect(!reorders.forward, "\(g): forward reorders \(layout.name)")
            if g.groups == 1 { #expect(!reorders.backwardWeights, "\(g): weight gradient reorders into \(layout.name)") }
        }
        #expect(blocked >= convolutions(net).count / 2)
        #expect(!net.store.layoutSignature.isEmpty)
        // Without blocked weights the store is canonical.
        let plain = try Architectures.build(ModelSpec(architecture: name, channels: 3, imageSize: size, classes: 10),
                                            backend: OneDNNBackend(blockedWeights: false))
        #expect(plain.store.isCanonical && plain.store.layoutSignature.isEmpty)
    }

    @Test func layoutsConvertBothWays() throws {
        let g = ConvGeometry(input: FeatureShape(channels: 32, height: 8, width: 8), outChannels: 48, kernel: 3, stride: 1, padding: 1)
        let layout = try #require(OneDNNBackend().weightLayout(g))
        #expect(layout.name == "OIhw16i16o")
        let canonical = (0..<g.weightCount).map(Float.init)
        var native = [Float](repeating: 0, count: g.weightCount), back = native
        canonical.withUnsafeBufferPointer { c in native.withUnsafeMutableBufferPointer { layout.toNative(c.baseAddress!, $0.baseAddress!) } }
        #expect(native != canonical && native.sorted() == canonical)
        // OIhw16i16o: o-block 0, i-block 0, h 0, w 0, then 16 i of 16 o: element 1 is (o 1, i 0), OIHW index 288.
        #expect(native[1] == Float(1 * 32 * 9))
        native.withUnsafeBufferPointer { n in back.withUnsafeMutableBufferPointer { layout.toCanonical(n.baseAddress!, $0.baseAddress!) } }
        #expect(back == canonical)
        // Depthwise: blocked by group; fewer than 16 output channels: a padded format, kept OIHW.
        let dw = ConvGeometry(input: FeatureShape(channels: 32, height: 8, width: 8), outChannels: 32, kernel: 3, stride: 1, padding: 1, groups: 32)
        #expect(OneDNNBackend().weightLayout(dw)?.name == "Ghw16g")   // oneDNN's Goihw16g; o and i have size 1
        let narrow = ConvGeometry(input: FeatureShape(channels: 3, height: 8, width: 8), outChannels: 10, kernel: 3, stride: 1, padding: 1)
        #expect(OneDNNBackend().weightLayout(narrow) == nil)
        // Size-1 dimensions do not enter the name: a 1×1 kernel's blocked order.
        let pointwise = ConvGeometry(input: FeatureShape(channels: 32, height: 8, width: 8), outChannels: 64, kernel: 1, stride: 1, padding: 0)
        #expect(OneDNNBackend().weightLayout(pointwise)?.name == "OI16i16o")
    }

    /// A few SGD steps on oneDNN with blocked weights, then the checkpoint: it holds canonical
    /// values, so the OpenBLAS backend loads it and computes the same logits, and a oneDNN run
    /// resumes from it with exactly the parameters and momentum it had.
    @Test(arguments: [SGD(momentum: 0.9, weightDecay: 1e-4) as Optimizer, Adam(weightDecay: 0) as Optimizer])
    func checkpointsAreCanonical(optimizer: Optimizer) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blocked-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec = ModelSpec(architecture: "resnet18", channels: 3, imageSize: 32, classes: 4)
        let net = try Architectures.build(spec, backend: OneDNNBackend(algorithm: .direct))
        let reference = try Architectures.build(spec, backend: ConvolutionBackends.portable)
        #expect(!net.store.isCanonical && reference.store.isCanonical)
        net.initializeParameters(seed: 6); reference.initializeParameters(seed: 6)
        #expect(net.store.canonicalParameters == Array(reference.store.parameterBuffer), "initialisation draws canonical values")
        #expect(Array(net.store.parameterBuffer) != Array(reference.store.parameterBuffer))
        optimizer.prepare(net.store)
        let batch = 4
        net.prepare(maxBatch: batch)
        var rng = RandomSource(seed: 2)
        let x = (0..<batch * net.inputShape.count).map { _ in rng.nextGaussian() }
        var d = [Float](repeating: 0, count: batch * spec.classes)
        for _ in 0..<3 {
            let logits = Array(UnsafeBufferPointer(start: net.forward(x, batch: batch, mode: .train), count: batch * spec.classes))
            _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: [0, 1, 2, 3], batch: batch, classes: spec.classes,
                                             gradScale: 1 / Float(batch), dLogits: &d)
            net.store.zeroGradients()
            net.backward(x, dLogits: d, batch: batch, mode: .train)
            optimizer.step(net.store, lr: 0.05)
        }
        let ema = WeightAverage(decay: 0.5, store: net.store)
        let path = dir + "/last.ckpt"
        var header = CheckpointHeader(model: spec, classes: ["a", "b", "c", "d"], network: net, epoch: 1, step: 3,
                                      metrics: [:], mean: [0, 0, 0], std: [1, 1, 1], options: [:])
        header.extras = [.init(name: "ema", count: ema.buffer.count)]
        let emaValues = ema.canonical(net.store)
        try emaValues.withUnsafeBufferPointer { try Checkpoint.save(net, header: header, extras: [$0], to: path) }
        let contents = try Checkpoint.load(path: path)
        #expect(contents.parameters == net.store.canonicalParameters)
        #expect(contents.optimizerState == net.store.canonicalOptimizerState)
        #expect(contents.optimizerState != Array(net.store.optimizerStateBuffer), "momentum is blocked in the store, canonical on disk")

        // The portable backend reads it: same parameters, same logits.
        optimizer.prepare(reference.store)
        try Checkpoint.apply(contents, to: reference, path: path)
        #expect(Array(reference.store.parameterBuffer) == contents.parameters)
        reference.prepare(maxBatch: batch)
        let a = Array(UnsafeBufferPointer(start: net.forward(x, batch: batch, mode: .eval), count: batch * spec.classes))
        let b = Array(UnsafeBufferPointer(start: reference.forward(x, batch: batch, mode: .eval), count: batch * spec.classes))
        for (p, q) in zip(a, b) { #expect(abs(p - q) <= 1e-4 * max(1, abs(q))) }

        // A oneDNN network resumes exactly: parameters, optimizer state and the weight average, bit for bit.
        let resumed = try Architectures.build(spec, backend: OneDNNBackend(algorithm: .direct))
        optimizer.prepare(resumed.store)
        try Checkpoint.apply(contents, to: resumed, path: path)
        #expect(Array(resumed.store.parameterBuffer) == Array(net.store.parameterBuffer))
        #expect(Array(resumed.store.optimizerStateBuffer) == Array(net.store.optimizerStateBuffer))
        let resumedEMA = WeightAverage(decay: 0.5, store: resumed.store)
        resumedEMA.load(try #require(contents.extras["ema"]), store: resumed.store)
        #expect(Array(resumedEMA.buffer) == Array(ema.buffer))

        // Exports are canonical too: the same file from either backend.
        try net.exportSafeTensors(to: dir + "/a.safetensors")
        try reference.exportSafeTensors(to: dir + "/b.safetensors")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/a.safetensors")) == Data(contentsOf: URL(fileURLWithPath: dir + "/b.safetensors")))
        let reloaded = try Architectures.build(spec, backend: OneDNNBackend(algorithm: .direct))
        _ = try reloaded.loadPretrained(path: dir + "/b.safetensors", seed: 1)
        #expect(Array(reloaded.store.parameterBuffer) == Array(net.store.parameterBuffer))
    }
}
