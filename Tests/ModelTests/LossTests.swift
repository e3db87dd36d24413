import Testing
import Foundation
@testable import Model
import Support

/// Losses against PyTorch and by finite differences.
///
/// Reference values: PyTorch 2.x in float64, logits z below, labels y = [2, 0, 1, 0]:
/// `F.cross_entropy(z, y, weight=w, label_smoothing=ε)` and its `z.grad`, and focal as
/// `(-alpha[y] * (1 - p_y)**γ * log p_y).mean()` with autograd (torch has no softmax focal loss);
/// scripts/torch_recipe_reference.py prints them (and the optimizer references in OptimizerTests).
@Suite struct LossTests {
    static let z: [Float] = [1, 2, 3, 0.5, -1, 2, 0, 0, 0, 2, 1, -1]
    static let y: [Int32] = [2, 0, 1, 0]
    static let w: [Float] = [0.5, 2, 1]

    /// Mean loss and ∂mean/∂z the way the trainer computes them on one rank: D from `weightSum`.
    static func mean(_ loss: Loss, z: [Float] = z, y: [Int32] = y, classes: Int = 3, targets: [Float]? = nil) -> (Double, [Float]) {
        let batch = y.count
        let d = targets.withUnsafeOptionalPointer { loss.weightSum(labels: y, targets: $0, batch: batch, classes: classes) }
        var g = [Float](repeating: .nan, count: z.count)
        let r = targets.withUnsafeOptionalPointer {
            loss.evaluate(logits: z, labels: y, targets: $0, batch: batch, classes: classes, gradScale: Float(1 / d), dLogits: &g)
        }
        return (r.lossSum / d, g)
    }

    static func expectClose(_ got: (Double, [Float]), loss: Double, grad: [Double], _ name: String) {
        #expect(abs(got.0 - loss) < 1e-6, "\(name): loss \(got.0), torch \(loss)")
        for (a, b) in zip(got.1, grad) { #expect(abs(Double(a) - b) < 1e-6, "\(name): grad \(got.1) vs torch \(grad)") }
    }

    @Test func crossEntropyMatchesTorch() {
        Self.expectClose(Self.mean(CrossEntropyLoss()), loss: 0.8991354416344585,
                         grad: [0.0225076433, 0.0611821178, -0.0836897611, -0.206177402, 0.0097781433, 0.1963992586,
                                0.0833333333, -0.1666666667, 0.0833333333, -0.0736538718, 0.0648741151, 0.0087797567], "ce")
    }

    @Test func weightedCrossEntropyMatchesTorch() {
        let loss = CrossEntropyLoss(classWeights: Self.w)
        #expect(loss.isWeighted)
        #expect(loss.weightSum(labels: Self.y, targets: nil, batch: 4, classes: 3) == 1 + 0.5 + 2 + 0.5)
        Self.expectClose(Self.mean(loss), loss: 0.912498074623318,
                         grad: [0.0225076433, 0.0611821178, -0.0836897611, -0.103088701, 0.0048890717, 0.0981996293,
                                0.1666666667, -0.3333333333, 0.1666666667, -0.0368269359, 0.0324370575, 0.0043898784], "weighted-ce")
    }

    @Test func labelSmoothingMatchesTorch() {
        Self.expectClose(Self.mean(CrossEntropyLoss(labelSmoothing: 0.1)), loss: 0.9574687749677917,
                         grad: [0.01417431, 0.0528487844, -0.0670230944, -0.1895107353, 0.00144481, 0.1880659253,
                                0.075, -0.15, 0.075, -0.0569872052, 0.0565407818, 0.0004464234], "smoothing")
        Self.expectClose(Self.mean(CrossEntropyLoss(classWeights: Self.w, labelSmoothing: 0.1)), loss: 1.0053140686850064,
                         grad: [0.018716104, 0.0455351531, -0.0642512571, -0.0918338611, -0.0111257188, 0.1029595799,
                                0.1555555556, -0.3069444444, 0.1513888889, -0.016737194, 0.0200953319, -0.0033581378], "weighted+smoothing")
    }

    @Test func focalMatchesTorch() {
        let alpha: [Float] = [0.25, 0.5, 1]
        Self.expectClose(Self.mean(FocalLoss(gamma: 0, alpha: alpha)), loss: 0.36987324678369277,
                         grad: [0.0225076433, 0.0611821178, -0.0836897611, -0.0515443505, 0.0024445358, 0.0490998147,
                                0.0416666667, -0.0833333333, 0.0416666667, -0.018413468, 0.0162185288, 0.0021949392], "focal γ=0")
        Self.expectClose(Self.mean(FocalLoss(gamma: 2, alpha: alpha)), loss: 0.14836843240248954,
                         grad: [0.0066084148, 0.0179635339, -0.0245719487, -0.0610082356, 0.0028933688, 0.0581148668,
                                0.0388631905, -0.0777263811, 0.0388631905, -0.0042693424, 0.0037604244, 0.0005089181], "focal γ=2")
        Self.expectClose(Self.mean(FocalLoss(gamma: 0.5, alpha: alpha)), loss: 0.281759229231552,
                         grad: [0.0182967154, 0.0497356291, -0.0680323445, -0.055471578, 0.002630788, 0.05284079,
                                0.0433645781, -0.0867291563, 0.0433645781, -0.0141703979, 0.0124812451, 0.0016891528], "focal γ=0.5")
    }

    @Test func handComputedSingleSample() {
        // logits (0, 0), label 0: p = 1/2. CE = log 2; focal γ=2 α=1: (1/2)²·log 2;
        // smoothing ε = 0.2 (K = 2): 0.9·log 2 + 0.1·log 2 = log 2 (both classes have p = 1/2).
        let z: [Float] = [0, 0], y: [Int32] = [0]
        #expect(abs(Self.mean(CrossEntropyLoss(), z: z, y: y, classes: 2).0 - log(2)) < 1e-12)
        #expect(abs(Self.mean(CrossEntropyLoss(labelSmoothing: 0.2), z: z, y: y, classes: 2).0 - log(2)) < 1e-12)
        let focal = Self.mean(FocalLoss(gamma: 2), z: z, y: y, classes: 2)
        #expect(abs(focal.0 - 0.25 * log(2)) < 1e-12)
        // ∂/∂z₀ = G·(1 − p) with G = γ(1−p)p·log p − (1−p)² = 2·¼·log ½ − ¼ = −(log 2)/2 − ¼.
        let G = -log(2.0) / 2 - 0.25
        #expect(abs(Double(focal.1[0]) - G * 0.5) < 1e-7 && abs(Double(focal.1[1]) + G * 0.5) < 1e-7)
        // Focal near p = 1 stays finite (γ < 1 has (1−p)^(γ−1) → ∞ times p·log p → 0).
        let sure = Self.mean(FocalLoss(gamma: 0.5), z: [40, -40], y: [0], classes: 2)
        #expect(sure.0.isFinite && sure.1.allSatisfy { $0.isFinite && abs($0) < 1e-10 })
    }

    @Test(arguments: [0, 1, 2, 3, 4])
    func gradientsMatchFiniteDifferences(_ which: Int) {
        var rng = RandomSource(seed: UInt64(20 + which))
        let batch = 5, classes = 4
        let weights: [Float] = [0.3, 1.7, 1, 2.5]
        var targets: [Float]? = nil
        let loss: Loss
        switch which {
        case 0: loss = CrossEntropyLoss(classWeights: weights)
        case 1: loss = CrossEntropyLoss(classWeights: weights, labelSmoothing: 0.15)
        case 2: loss = FocalLoss(gamma: 2, alpha: [0.25, 0.5, 0.75, 1])
        case 3: loss = FocalLoss(gamma: 0.7)
        default:   // soft targets (mixup) with weights and smoothing
            loss = CrossEntropyLoss(classWeights: weights, labelSmoothing: 0.1)
            targets = (0..<batch).flatMap { _ -> [Float] in
                let r = (0..<classes).map { _ in Float(rng.nextDouble()) + 0.05 }
                let s = r.reduce(0, +)
                return r.map { $0 / s }
            }
        }
        var z = (0..<batch * classes).map { _ in rng.nextGaussian() * 2 }
        let y = (0..<batch).map { _ in Int32(rng.nextInt(below: classes)) }
        // Scale 1: the gradient of lossSum itself.
        func lossSum(_ z: [Float]) -> Double {
            targets.withUnsafeOptionalPointer { loss.evaluate(logits: z, labels: y, targets: $0, batch: batch, classes: classes, gradScale: 1, dLogits: nil).lossSum }
        }
        var g = [Float](repeating: 0, count: z.count)
        _ = targets.withUnsafeOptionalPointer { loss.evaluate(logits: z, labels: y, targets: $0, batch: batch, classes: classes, gradScale: 1, dLogits: &g) }
        for i in z.indices {
            let e: Float = 1e-2
            z[i] += e; let plus = lossSum(z)
            z[i] -= 2 * e; let minus = lossSum(z)
            z[i] += e
            let numeric = (plus - minus) / Double(2 * e)
            #expect(abs(numeric - Double(g[i])) < 2e-3 * max(1, abs(numeric)), "loss \(which) logit \(i): analytic \(g[i]) numeric \(numeric)")
        }
    }

    /// Split over "ranks" with the GLOBAL normaliser, the summed gradients equal one rank's on the
    /// whole batch; per-rank normalisers averaged over ranks (what DDP with a locally weighted mean
    /// would do) give another gradient, since the halves' weight sums differ.
    @Test func weightedMeanSplitsAcrossRanks() {
        let loss = CrossEntropyLoss(classWeights: Self.w)
        let whole = Self.mean(loss)
        let parts: [Range<Int>] = [0..<2, 2..<4]
        let d = parts.map { r in Array(Self.y[r]).withUnsafeBufferPointer { loss.weightSum(labels: $0.baseAddress!, targets: nil, batch: r.count, classes: 3) } }
        #expect(d == [1.5, 2.5])
        let global = d.reduce(0, +)
        var summed = [Float](), local = [Float](), lossSum = 0.0
        for (j, r) in parts.enumerated() {
            var g = [Float](repeating: 0, count: r.count * 3), h = g
            let zs = Array(Self.z[r.lowerBound * 3..<r.upperBound * 3]), ys = Array(Self.y[r])
            lossSum += loss.evaluate(logits: zs, labels: ys, targets: nil, batch: r.count, classes: 3, gradScale: Float(1 / global), dLogits: &g).lossSum
            _ = loss.evaluate(logits: zs, labels: ys, targets: nil, batch: r.count, classes: 3, gradScale: Float(1 / d[j]) / 2, dLogits: &h)
            summed += g; local += h
        }
        #expect(abs(lossSum / global - whole.0) < 1e-9)
        for (a, b) in zip(summed, whole.1) { #expect(abs(a - b) < 1e-7) }
        #expect(zip(local, whole.1).map { abs($0 - $1) }.max()! > 1e-2)
    }
}

extension Optional where Wrapped == [Float] {
    func withUnsafeOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .some(let a): return a.withUnsafeBufferPointer { body($0.baseAddress) }
        case .none: return body(nil)
        }
    }
}
