import Foundation
import Model
import Support
import Testing

/// Cross-entropy on mixup/cutmix soft targets: hand-computed values, agreement with the
/// one-hot loss, and its gradient against central finite differences.
@Suite struct SoftTargetLossTests {
    func evaluate(_ logits: [Float], _ targets: [Float]?, labels: [Int32], classes: Int, gradScale: Float = 1) -> (LossResult, [Float]) {
        let batch = labels.count
        var d = [Float](repeating: .nan, count: batch * classes)
        let r = logits.withUnsafeBufferPointer { z in labels.withUnsafeBufferPointer { l in d.withUnsafeMutableBufferPointer { db in
            if let targets {
                return targets.withUnsafeBufferPointer { t in
                    CrossEntropyLoss().evaluate(logits: z.baseAddress!, labels: l.baseAddress!, targets: t.baseAddress!, batch: batch,
                                                      classes: classes, gradScale: gradScale, dLogits: db.baseAddress!)
                }
            }
            return CrossEntropyLoss().evaluate(logits: z.baseAddress!, labels: l.baseAddress!, targets: nil, batch: batch,
                                                     classes: classes, gradScale: gradScale, dLogits: db.baseAddress!)
        } } }
        return (r, d)
    }

    @Test func handComputed() {
        // p = (0.25, 0.75); q = (0.5, 0.5): ℓ = −0.5·ln 0.25 − 0.5·ln 0.75, ∂ℓ/∂z = p − q.
        let (r, d) = evaluate([0, Float(log(3.0))], [0.5, 0.5], labels: [1], classes: 2, gradScale: 0.5)
        #expect(abs(r.lossSum - (-0.5 * log(0.25) - 0.5 * log(0.75))) < 1e-6)
        #expect(r.correct == 1)
        #expect(abs(d[0] - (-0.25 * 0.5)) < 1e-6 && abs(d[1] - 0.25 * 0.5) < 1e-6)
    }

    @Test func oneHotTargetsAreCrossEntropy() {
        var rng = RandomSource(seed: 4)
        let classes = 5, labels: [Int32] = [0, 3, 4, 1]
        let logits = (0..<(labels.count * classes)).map { _ in rng.nextGaussian() * 2 }
        var onehot = [Float](repeating: 0, count: logits.count)
        for (n, l) in labels.enumerated() { onehot[n * classes + Int(l)] = 1 }
        let (soft, dSoft) = evaluate(logits, onehot, labels: labels, classes: classes, gradScale: 0.25)
        let (hard, dHard) = evaluate(logits, nil, labels: labels, classes: classes, gradScale: 0.25)
        #expect(abs(soft.lossSum - hard.lossSum) < 1e-5)
        #expect(soft.correct == hard.correct)
        #expect(zip(dSoft, dHard).allSatisfy { abs($0 - $1) < 1e-6 })
    }

    @Test func gradientMatchesFiniteDifferences() {
        var rng = RandomSource(seed: 12)
        let classes = 6, batch = 4
        let labels = (0..<batch).map { _ in Int32(rng.nextInt(below: classes)) }
        let logits = (0..<(batch * classes)).map { _ in rng.nextGaussian() * 1.5 }
        // Mixup-like targets: λ on one class, 1 − λ on another (rows sum to 1).
        var targets = [Float](repeating: 0, count: batch * classes)
        for n in 0..<batch {
            let lam = rng.nextFloat()
            targets[n * classes + Int(labels[n])] += lam
            targets[n * classes + rng.nextInt(below: classes)] += 1 - lam
        }
        let scale: Float = 1 / Float(batch)
        let (_, analytic) = evaluate(logits, targets, labels: labels, classes: classes, gradScale: scale)
        let eps: Float = 1e-2
        var worst = 0.0
        for i in 0..<logits.count {
            var plus = logits, minus = logits
            plus[i] += eps; minus[i] -= eps
            let lp = evaluate(plus, targets, labels: labels, classes: classes).0.lossSum
            let lm = evaluate(minus, targets, labels: labels, classes: classes).0.lossSum
            let numeric = (lp - lm) / Double(2 * eps) * Double(scale)
            worst = max(worst, abs(numeric - Double(analytic[i])))
        }
        #expect(worst < 1e-4, "worst |analytic − numeric| = \(worst)")
    }
}
