import Foundation

/// Cross-entropy against per-sample target distributions (mixup/cutmix soft targets):
///
///     ℓᵢ = −Σₖ qᵢₖ·log pᵢₖ        ∂ℓᵢ/∂zᵢⱼ = (Σₖ qᵢₖ)·pᵢⱼ − qᵢⱼ        D = number of samples
///
/// (timm's `SoftTargetCrossEntropy`). Without `targets` the one-hot labels are the targets, so it
/// is `SoftmaxCrossEntropy`. `correct` counts arg-max = label (the sample's own label).
public struct SoftTargetCrossEntropy: Loss {
    public init() {}
    public var acceptsSoftTargets: Bool { true }

    public func evaluate(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, targets: UnsafePointer<Float>?,
                         batch: Int, classes: Int, gradScale: Float, dLogits: UnsafeMutablePointer<Float>?) -> LossResult {
        guard let targets else {
            return SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes,
                                                gradScale: gradScale, dLogits: dLogits)
        }
        var lossSum = 0.0, correct = 0
        for n in 0..<batch {
            let z = logits + n * classes, q = targets + n * classes
            var maxZ = z[0], arg = 0
            for k in 1..<max(classes, 1) where z[k] > maxZ { maxZ = z[k]; arg = k }
            var sum = 0.0
            for k in 0..<classes { sum += exp(Double(z[k] - maxZ)) }
            let logSum = log(sum)
            var total = 0.0
            for k in 0..<classes where q[k] != 0 {
                total += Double(q[k])
                lossSum += Double(q[k]) * (logSum - Double(z[k] - maxZ))
            }
            if arg == Int(labels[n]) { correct += 1 }
            guard let d = dLogits else { continue }
            for k in 0..<classes {
                let p = exp(Double(z[k] - maxZ) - logSum)
                d[n * classes + k] = Float(total * p - Double(q[k])) * gradScale
            }
        }
        return LossResult(lossSum: lossSum, correct: correct)
    }
}
