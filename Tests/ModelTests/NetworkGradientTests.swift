import Testing
@testable import Model
import Support

/// The whole network (forward, backward plumbing, loss) against finite differences.
@Suite struct NetworkGradientTests {
    @Test(arguments: [true, false])
    func refcnnEndToEnd(batchNorm: Bool) throws {
        let spec = ModelSpec(architecture: "refcnn", channels: 2, imageSize: 12, classes: 3, batchNorm: batchNorm)
        let net = try Architectures.build(spec)
        net.initializeParameters(seed: 4)
        let batch = 4
        net.prepare(maxBatch: batch)
        var rng = RandomSource(seed: 5)
        // Large inputs keep the no-BatchNorm variant's gradients well above Float rounding noise.
        let x = (0..<batch * net.inputShape.count).map { _ in rng.nextGaussian() * (batchNorm ? 1 : 10) }
        let labels: [Int32] = [0, 2, 1, 1]
        var d = [Float](repeating: 0, count: batch * 3)
        func loss() -> Double {
            let logits = net.forward(x, batch: batch, mode: .train)
            return SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: 3).lossSum
        }
        let logits = net.forward(x, batch: batch, mode: .train)
        _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: 3, gradScale: 1, dLogits: &d)
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
        for slot in net.store.slots {
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
}
