import Testing
@testable import Model
import Support

/// The whole network (forward, backward plumbing, loss) against finite differences.
@Suite struct NetworkGradientTests {
    /// Probes the first, middle and last coordinate of every trainable parameter tensor of `net`
    /// (`lrScale` ≠ 0) with central differences of the summed cross-entropy and compares with
    /// backward's gradient.
    func checkNetwork(_ net: Network, batch: Int, inputScale: Float = 1, seed: UInt64 = 5) {
        let classes = net.outputShape.count
        net.prepare(maxBatch: batch)
        var rng = RandomSource(seed: seed)
        let x = (0..<batch * net.inputShape.count).map { _ in rng.nextGaussian() * inputScale }
        let labels = (0..<batch).map { Int32(($0 * 2 + 1) % classes) }
        var d = [Float](repeating: 0, count: batch * classes)
        func loss() -> Double {
            let logits = net.forward(x, batch: batch, mode: .train)
            return SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes).lossSum
        }
        let logits = net.forward(x, batch: batch, mode: .train)
        _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes, gradScale: 1, dLogits: &d)
        net.store.zeroGradients()
        net.backward(x, dLogits: d, batch: batch, mode: .train)
        let analytic = Array(net.store.gradientBuffer)
        // Central differences at two step sizes; a coordinate whose two estimates disagree had a
        // ReLU or max-pool switch inside the step (a kink), where no derivative exists: skip it.
        func numeric(_ i: Int, _ e: Float) -> Double {
            net.store.parameters[i] += e; let lp = loss()
            net.store.parameters[i] -= 2 * e; let lm = loss()
            net.store.parameters[i] += e
            return (lp - lm) / Double(2 * e)
        }
        var num2 = 0.0, diff2 = 0.0, used = 0, probed = 0
        for slot in net.store.slots where slot.lrScale != 0 {
            for i in [slot.range.lowerBound, slot.range.lowerBound + slot.range.count / 2, slot.range.upperBound - 1] {
                let n1 = numeric(i, 2e-3), n2 = numeric(i, 1e-3)
                probed += 1
                if abs(n1 - n2) > 0.05 * max(abs(n1), abs(n2)) + 2e-4 { continue }
                used += 1
                let estimate = (4 * n2 - n1) / 3   // Richardson: cancels the O(e²) error
                num2 += estimate * estimate
                diff2 += (estimate - Double(analytic[i])) * (estimate - Double(analytic[i]))
            }
        }
        #expect(used >= probed * 3 / 4, "too many kinks: \(used) of \(probed) coordinates usable")
        let rel = diff2.squareRoot() / num2.squareRoot()
        #expect(rel < 2e-2, "relative error \(rel)")
    }

    /// On oneDNN, refcnn runs on the blocked layout from the first convolution's output to the
    /// global pool (convolutions, BatchNorm, ReLU, max-pool, pool all on nChw16c).
    @Test(arguments: [true, false], ["openblas", "onednn"])
    func refcnnEndToEnd(batchNorm: Bool, backend: String) throws {
        let spec = ModelSpec(architecture: "refcnn", channels: 2, imageSize: 12, classes: 3, batchNorm: batchNorm)
        let net = try Architectures.build(spec, backend: try ConvolutionBackends.named(backend))
        net.initializeParameters(seed: 4)
        // Large inputs keep the no-BatchNorm variant's gradients well above Float rounding noise.
        checkNetwork(net, batch: 4, inputScale: batchNorm ? 1 : 10)
    }

    /// A tiny resnet18 (stage widths 4, 4, 8, 8: the torchvision structure with basic blocks
    /// with and without downsample, padded max-pool, global pooling) and a hidden-MLP head.
    @Test(arguments: ["openblas", "onednn"])
    func tinyResNetEndToEnd(backend: String) throws {
        let spec = ModelSpec(architecture: "resnet18", channels: 3, imageSize: 20, classes: 3, widths: [4, 4, 8, 8], head: [6])
        let net = try Architectures.build(spec, backend: try ConvolutionBackends.named(backend))
        net.initializeParameters(seed: 4)
        checkNetwork(net, batch: 4)
    }
}
