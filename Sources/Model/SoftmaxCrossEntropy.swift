import Foundation

/// Softmax cross-entropy over logits [batch, classes] with integer labels.
///
/// Under data parallelism each rank passes `gradScale = 1 / globalBatch`, so that the SUM of the
/// ranks' gradients (what the allreduce computes) is exactly the gradient of the mean loss over
/// the global batch, however unevenly it was split. This is the only place the average is taken.
public enum SoftmaxCrossEntropy {
    public struct Result: Sendable {
        /// Σ −log p(label) over the batch (not averaged).
        public var lossSum: Double
        /// Samples whose arg-max equals the label.
        public var correct: Int
    }

    /// - Parameters:
    ///   - dLogits: if non-nil, receives (softmax − onehot) · gradScale.
    ///   - predicted: if non-nil, receives the arg-max class per sample.
    ///   - probabilities: if non-nil, receives the softmax [batch, classes].
    public static func evaluate(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, classes: Int,
                                gradScale: Float = 1, dLogits: UnsafeMutablePointer<Float>? = nil,
                                predicted: UnsafeMutablePointer<Int32>? = nil,
                                probabilities: UnsafeMutablePointer<Float>? = nil) -> Result {
        var lossSum = 0.0, correct = 0
        for n in 0..<batch {
            let z = logits + n * classes
            var maxZ = z[0], arg = 0
            for k in 1..<max(classes, 1) where z[k] > maxZ { maxZ = z[k]; arg = k }
            var sum = 0.0
            for k in 0..<classes { sum += exp(Double(z[k] - maxZ)) }
            let label = Int(labels[n])
            let logSum = log(sum)
            lossSum += logSum - Double(z[label] - maxZ)
            if arg == label { correct += 1 }
            predicted?[n] = Int32(arg)
            if dLogits != nil || probabilities != nil {
                for k in 0..<classes {
                    let p = Float(exp(Double(z[k] - maxZ) - logSum))
                    probabilities?[n * classes + k] = p
                    dLogits?[n * classes + k] = (p - (k == label ? 1 : 0)) * gradScale
                }
            }
        }
        return Result(lossSum: lossSum, correct: correct)
    }
}
