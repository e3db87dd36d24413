import Foundation

// NOTE (augment branch): a copy of the `Loss` protocol from the recipe branch (not yet in main),
// so the soft-target loss can conform to it; take recipe's Loss.swift when merging.

/// A classification loss over logits [batch, classes].
///
/// The loss of a step is a weighted mean over the GLOBAL batch, Σᵢ ℓᵢ / D. `evaluate` returns
/// the numerator's local part (`lossSum`, never divided) and writes ∂lossSum/∂logits · gradScale;
/// under data parallelism every rank passes gradScale = 1/D with the global normaliser D, so the
/// sum of the ranks' gradients (the allreduce) is exactly the gradient of the global mean however
/// the batch was split. D is the number of samples, or for a weighted loss (`isWeighted`) the sum
/// of `weightSum` over all ranks (PyTorch's weighted mean divides by the batch's weight sum; a
/// per-rank sum would make N ranks differ from 1).
///
/// `targets`, when given, are per-sample target distributions [batch, classes] (mixup/cutmix
/// soft targets) that replace the one-hot labels in the loss; the labels still count `correct`.
public protocol Loss: Sendable {
    /// Whether samples have unequal weight in the mean (then D = Σ weightSum over the ranks).
    var isWeighted: Bool { get }
    /// Whether `evaluate` accepts soft `targets`.
    var acceptsSoftTargets: Bool { get }
    /// These samples' share of the normaliser D (their count when unweighted).
    func weightSum(labels: UnsafePointer<Int32>, targets: UnsafePointer<Float>?, batch: Int, classes: Int) -> Double
    /// - Parameter dLogits: if non-nil, receives ∂lossSum/∂logits · gradScale.
    func evaluate(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, targets: UnsafePointer<Float>?,
                  batch: Int, classes: Int, gradScale: Float, dLogits: UnsafeMutablePointer<Float>?) -> LossResult
}

public typealias LossResult = SoftmaxCrossEntropy.Result

extension Loss {
    public var isWeighted: Bool { false }
    public var acceptsSoftTargets: Bool { false }
    public func weightSum(labels: UnsafePointer<Int32>, targets: UnsafePointer<Float>?, batch: Int, classes: Int) -> Double {
        Double(batch)
    }
}
