import Foundation

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

/// log-softmax helper: the row's maximum, log Σ exp(z − max), and arg-max.
@inline(__always)
func softmaxRow(_ z: UnsafePointer<Float>, _ classes: Int) -> (maxZ: Float, logSum: Double, arg: Int) {
    var maxZ = z[0], arg = 0
    for k in 1..<max(classes, 1) where z[k] > maxZ { maxZ = z[k]; arg = k }
    var sum = 0.0
    for k in 0..<classes { sum += exp(Double(z[k] - maxZ)) }
    return (maxZ, log(sum), arg)
}

/// Cross-entropy with optional class weights and label smoothing, PyTorch's
/// `F.cross_entropy(weight=w, label_smoothing=ε, reduction="mean")`:
///
///     ℓᵢ = (1−ε)·w_yᵢ·(−log p_yᵢ) + (ε/K)·Σₖ wₖ·(−log pₖ)        D = Σᵢ w_yᵢ   (global)
///
/// (w = 1 without weights, so D is the sample count). With soft targets qᵢ (mixup),
/// ℓᵢ = Σₖ wₖ·((1−ε)·qᵢₖ + ε/K)·(−log pᵢₖ) and, as in PyTorch for probability targets, D counts
/// samples. Without weights, smoothing or soft targets it is `SoftmaxCrossEntropy`.
public struct CrossEntropyLoss: Loss {
    public var classWeights: [Float]?
    public var labelSmoothing: Float

    public init(classWeights: [Float]? = nil, labelSmoothing: Float = 0) {
        self.classWeights = classWeights; self.labelSmoothing = labelSmoothing
    }

    public var isWeighted: Bool { classWeights != nil }
    public var acceptsSoftTargets: Bool { true }

    public func weightSum(labels: UnsafePointer<Int32>, targets: UnsafePointer<Float>?, batch: Int, classes: Int) -> Double {
        guard let w = classWeights, targets == nil else { return Double(batch) }
        var sum = 0.0
        for n in 0..<batch { sum += Double(w[Int(labels[n])]) }
        return sum
    }

    public func evaluate(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, targets: UnsafePointer<Float>?,
                         batch: Int, classes: Int, gradScale: Float, dLogits: UnsafeMutablePointer<Float>?) -> LossResult {
        if classWeights == nil, labelSmoothing == 0, targets == nil {
            return SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes,
                                                gradScale: gradScale, dLogits: dLogits)
        }
        let eps = Double(labelSmoothing), uniform = eps / Double(classes)
        var lossSum = 0.0, correct = 0
        classWeights.withUnsafeBufferPointerOrNil { weights in
            for n in 0..<batch {
                let z = logits + n * classes
                let (maxZ, logSum, arg) = softmaxRow(z, classes)
                let label = Int(labels[n])
                if arg == label { correct += 1 }
                // Target coefficient of class k: tₖ = wₖ·((1−ε)·qₖ + ε/K); ℓ = Σ tₖ·(−log pₖ),
                // ∂ℓ/∂zⱼ = (Σₖ tₖ)·pⱼ − tⱼ.
                func t(_ k: Int) -> Double {
                    let q = targets.map { Double($0[n * classes + k]) } ?? (k == label ? 1 : 0)
                    return (weights.map { Double($0[k]) } ?? 1) * ((1 - eps) * q + uniform)
                }
                var total = 0.0
                for k in 0..<classes {
                    let tk = t(k)
                    total += tk
                    lossSum += tk * (logSum - Double(z[k] - maxZ))
                }
                if let d = dLogits {
                    for k in 0..<classes {
                        let p = exp(Double(z[k] - maxZ) - logSum)
                        d[n * classes + k] = Float(total * p - t(k)) * gradScale
                    }
                }
            }
        }
        return LossResult(lossSum: lossSum, correct: correct)
    }
}

/// Focal loss (Lin et al. 2017) over the softmax, with an optional per-class α:
///
///     ℓᵢ = −α_yᵢ·(1 − p_yᵢ)^γ·log p_yᵢ          D = number of samples (global)
///
/// γ = 0 with no α is cross-entropy. α weights are NOT normalised away (as in RetinaNet and
/// torchvision's `sigmoid_focal_loss`, the mean is over samples), so α scales the loss and the
/// gradient. A single α applies to every class.
public struct FocalLoss: Loss {
    public var gamma: Float
    /// α per class (nil: 1).
    public var alpha: [Float]?

    public init(gamma: Float = 2, alpha: [Float]? = nil) {
        self.gamma = gamma; self.alpha = alpha
    }

    public func evaluate(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, targets: UnsafePointer<Float>?,
                         batch: Int, classes: Int, gradScale: Float, dLogits: UnsafeMutablePointer<Float>?) -> LossResult {
        precondition(targets == nil, "focal loss takes no soft targets")
        let g = Double(gamma)
        var lossSum = 0.0, correct = 0
        for n in 0..<batch {
            let z = logits + n * classes
            let (maxZ, logSum, arg) = softmaxRow(z, classes)
            let label = Int(labels[n])
            if arg == label { correct += 1 }
            let a = alpha.map { Double($0[label]) } ?? 1
            let logP = Double(z[label] - maxZ) - logSum
            let p = exp(logP), q = -expm1(logP)   // q = 1 − p, accurate near p = 1
            let modulator = g == 0 ? 1 : pow(q, g)
            lossSum += -a * modulator * logP
            guard let d = dLogits else { continue }
            // ∂ℓ/∂zⱼ = G·([j = y] − pⱼ) with G = α·(γ·(1−p)^(γ−1)·p·log p − (1−p)^γ).
            let focusing = g > 0 && q > 0 ? g * pow(q, g - 1) * p * logP : 0
            let G = a * (focusing - modulator)
            for k in 0..<classes {
                let pk = exp(Double(z[k] - maxZ) - logSum)
                d[n * classes + k] = Float(G * ((k == label ? 1 : 0) - pk)) * gradScale
            }
        }
        return LossResult(lossSum: lossSum, correct: correct)
    }
}

extension Optional where Wrapped == [Float] {
    fileprivate func withUnsafeBufferPointerOrNil<R>(_ body: (UnsafeBufferPointer<Float>?) -> R) -> R {
        switch self {
        case .some(let a): return a.withUnsafeBufferPointer { body($0) }
        case .none: return body(nil)
        }
    }
}
