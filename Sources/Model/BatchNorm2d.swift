/// Batch normalisation over (batch, height, width) per channel, PyTorch semantics:
/// weight (γ) [C] = 1, bias (β) [C] = 0; state running_mean [C] = 0, running_var [C] = 1,
/// momentum 0.1, eps 1e-5; the running variance uses the unbiased batch variance.
///
/// x, y: [batch, C, H, W]. In `.train` mode normalises with the batch's statistics (this rank's
/// slice of the global batch under data parallelism, as PyTorch DDP does without SyncBatchNorm);
/// in `.eval` mode with the running statistics. Also used for flat features (H = W = 1).
/// A `frozen` BatchNorm (fine-tuning) always behaves as in `.eval` mode: running statistics
/// untouched, no γ/β gradients.
public final class BatchNorm2d: FreezableLayer {
    public let kind = "batchnorm2d"
    public let momentum: Float, eps: Float
    private var shape = FeatureShape(features: 0)
    /// Set by `Network.applyFineTuning`.
    public internal(set) var frozen = false
    private var gamma: UnsafeMutablePointer<Float>!, beta: UnsafeMutablePointer<Float>!
    private var dGamma: UnsafeMutablePointer<Float>!, dBeta: UnsafeMutablePointer<Float>!
    private var runningMean: UnsafeMutablePointer<Float>!, runningVar: UnsafeMutablePointer<Float>!
    /// Saved by forward for backward: per-channel mean and 1/sqrt(var + eps) actually used.
    private var savedMean: UnsafeMutablePointer<Float>!, savedInvStd: UnsafeMutablePointer<Float>!
    /// The activation layout (negotiated by the network; planar by default).
    private var layout = ActivationLayout.planar

    public init(momentum: Float = 0.1, eps: Float = 1e-5) { self.momentum = momentum; self.eps = eps }
    deinit { savedMean?.deallocate(); savedInvStd?.deallocate() }

    public func configure(input: FeatureShape) throws -> FeatureShape {
        shape = input
        savedMean?.deallocate(); savedInvStd?.deallocate()
        savedMean = .allocate(capacity: input.channels); savedMean.initialize(repeating: 0, count: input.channels)
        savedInvStd = .allocate(capacity: input.channels); savedInvStd.initialize(repeating: 1, count: input.channels)
        return input
    }

    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec(name: "weight", count: shape.channels, initializer: .constant(1), decays: false),
         ParameterSpec(name: "bias", count: shape.channels, initializer: .constant(0), decays: false)]
    }
    public var stateSpecs: [StateSpec] {
        [StateSpec(name: "running_mean", count: shape.channels, initialValue: 0),
         StateSpec(name: "running_var", count: shape.channels, initialValue: 1)]
    }

    public func bind(_ b: ParameterBinding) {
        gamma = b.parameters[0]; beta = b.parameters[1]
        dGamma = b.gradients[0]; dBeta = b.gradients[1]
        runningMean = b.state[0]; runningVar = b.state[1]
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        if layout == .blocked16 && shape.plane > 1 { return forwardBlocked(x, y, batch: batch, mode: mode) }
        let C = shape.channels, HW = shape.plane, sampleStride = shape.count
        let m = batch * HW
        let train = mode == .train && !frozen
        for c in 0..<C {
            var mean: Float, invStd: Float
            if train && m > 0 {
                var sum = 0.0
                for n in 0..<batch { sum += Double(Vec.sum(x + n * sampleStride + c * HW, HW)) }
                let mu = sum / Double(m)
                var sq = 0.0
                for n in 0..<batch { sq += Double(Vec.sumSquaredDeviation(x + n * sampleStride + c * HW, HW, from: Float(mu))) }
                let variance = sq / Double(m)
                mean = Float(mu)
                invStd = Float(1 / (variance + Double(eps)).squareRoot())
                let unbiased = m > 1 ? variance * Double(m) / Double(m - 1) : variance
                runningMean[c] = (1 - momentum) * runningMean[c] + momentum * mean
                runningVar[c] = (1 - momentum) * runningVar[c] + momentum * Float(unbiased)
            } else {
                mean = runningMean[c]
                invStd = 1 / (runningVar[c] + eps).squareRoot()
            }
            savedMean[c] = mean; savedInvStd[c] = invStd
            let scale = gamma[c] * invStd, shift = beta[c] - mean * scale
            for n in 0..<batch {
                Vec.affine(x + n * sampleStride + c * HW, y + n * sampleStride + c * HW, HW, scale: scale, shift: shift)
            }
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        if layout == .blocked16 && shape.plane > 1 { return backwardBlocked(x: x, dy: dy, dx: dx, batch: batch, mode: mode) }
        let C = shape.channels, HW = shape.plane, sampleStride = shape.count
        let m = Float(batch * HW)
        guard batch > 0 else { return }
        if frozen {
            // Eval-mode normalisation is affine per channel: dx = γ·invStd·dy, nothing else.
            guard let dx else { return }
            for c in 0..<C {
                let s = gamma[c] * savedInvStd[c]
                for n in 0..<batch { Vec.affine(dy + n * sampleStride + c * HW, dx + n * sampleStride + c * HW, HW, scale: s, shift: 0) }
            }
            return
        }
        for c in 0..<C {
            let mean = savedMean[c], invStd = savedInvStd[c]
            // sum(dy) and sum(dy * xhat) with xhat = (x - mean) * invStd
            var sumDy = 0.0, sumDyXc = 0.0
            for n in 0..<batch {
                let o = n * sampleStride + c * HW
                let (a, b) = Vec.sumAndDotCentered(dy + o, x + o, HW, center: mean)
                sumDy += Double(a); sumDyXc += Double(b)
            }
            let sDy = Float(sumDy), sDyXhat = Float(sumDyXc) * invStd
            dGamma[c] += sDyXhat
            dBeta[c] += sDy
            guard let dx else { continue }
            if mode == .train {
                // dx = γ·invStd/m · (m·dy − Σdy − xhat·Σ(dy·xhat))
                let k = gamma[c] * invStd / m
                let a = k * m                        // coefficient of dy
                let b = -k * sDy                     // constant
                let cx = -k * sDyXhat * invStd       // coefficient of (x − mean)
                for n in 0..<batch {
                    let o = n * sampleStride + c * HW
                    Vec.bnBackward(dy + o, x + o, dx + o, HW, a: a, b: b, cx: cx, mean: mean)
                }
            } else {
                let s = gamma[c] * invStd
                for n in 0..<batch {
                    let o = n * sampleStride + c * HW
                    Vec.affine(dy + o, dx + o, HW, scale: s, shift: 0)
                }
            }
        }
    }
}

/// The same arithmetic on the blocked layout: 16 channels per vector, [C/16][H][W][16] per sample.
extension BatchNorm2d: LayoutNegotiating {
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) {
        layout = offered
        return (offered, offered)
    }

    private typealias V = SIMD16<Float>

    private func forwardBlocked(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode) {
        let B = ActivationLayout.block, HW = shape.plane, stride = shape.count, m = batch * HW
        let train = mode == .train && !frozen
        for cb in 0..<(shape.channels / B) {
            let c0 = cb * B, block = cb * HW * B
            var mean = V(), invStd = V()
            if train && m > 0 {
                var sum = SIMD16<Double>()
                for n in 0..<batch {
                    let p = x + n * stride + block
                    var s = V()
                    for i in 0..<HW { s += Vec.load(p + i * B) }
                    sum += SIMD16<Double>(s)
                }
                let mu = sum / Double(m)
                let muF = V(mu)
                var sq = SIMD16<Double>()
                for n in 0..<batch {
                    let p = x + n * stride + block
                    var s = V()
                    for i in 0..<HW { let d = Vec.load(p + i * B) - muF; s += d * d }
                    sq += SIMD16<Double>(s)
                }
                let variance = sq / Double(m)
                mean = muF
                invStd = V(1 / (variance + Double(eps)).squareRoot())
                let unbiased = m > 1 ? variance * (Double(m) / Double(m - 1)) : variance
                for l in 0..<B {
                    runningMean[c0 + l] = (1 - momentum) * runningMean[c0 + l] + momentum * mean[l]
                    runningVar[c0 + l] = (1 - momentum) * runningVar[c0 + l] + momentum * Float(unbiased[l])
                }
            } else {
                for l in 0..<B {
                    mean[l] = runningMean[c0 + l]
                    invStd[l] = 1 / (runningVar[c0 + l] + eps).squareRoot()
                }
            }
            Vec.store(mean, savedMean + c0); Vec.store(invStd, savedInvStd + c0)
            let scale = Vec.load(gamma + c0) * invStd, shift = Vec.load(beta + c0) - mean * scale
            for n in 0..<batch {
                let p = x + n * stride + block, q = y + n * stride + block
                for i in 0..<HW { Vec.store(Vec.load(p + i * B) * scale + shift, q + i * B) }
            }
        }
    }

    private func backwardBlocked(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?,
                                 batch: Int, mode: Mode) {
        let B = ActivationLayout.block, HW = shape.plane, stride = shape.count
        let m = Float(batch * HW)
        guard batch > 0 else { return }
        for cb in 0..<(shape.channels / B) {
            let c0 = cb * B, block = cb * HW * B
            let mean = Vec.load(savedMean + c0), invStd = Vec.load(savedInvStd + c0)
            if frozen {
                // Eval-mode normalisation is affine per channel: dx = γ·invStd·dy, nothing else.
                guard let dx else { continue }
                let s = Vec.load(self.gamma + c0) * invStd
                for n in 0..<batch {
                    let o = n * stride + block
                    for i in 0..<HW { Vec.store(Vec.load(dy + o + i * B) * s, dx + o + i * B) }
                }
                continue
            }
            var sumDy = SIMD16<Double>(), sumDyXc = SIMD16<Double>()
            for n in 0..<batch {
                let o = n * stride + block
                var a = V(), b = V()
                for i in 0..<HW {
                    let g = Vec.load(dy + o + i * B)
                    a += g; b += g * (Vec.load(x + o + i * B) - mean)
                }
                sumDy += SIMD16<Double>(a); sumDyXc += SIMD16<Double>(b)
            }
            let sDy = V(sumDy), sDyXhat = V(sumDyXc) * invStd
            Vec.store(Vec.load(dGamma + c0) + sDyXhat, dGamma + c0)
            Vec.store(Vec.load(dBeta + c0) + sDy, dBeta + c0)
            guard let dx else { continue }
            let gamma = Vec.load(self.gamma + c0)
            if mode == .train {
                // dx = γ·invStd/m · (m·dy − Σdy − xhat·Σ(dy·xhat))
                let k = gamma * invStd / m
                let a = k * m, b = -k * sDy, cx = -k * sDyXhat * invStd
                for n in 0..<batch {
                    let o = n * stride + block
                    for i in 0..<HW {
                        let j = o + i * B
                        Vec.store(a * Vec.load(dy + j) + b + cx * (Vec.load(x + j) - mean), dx + j)
                    }
                }
            } else {
                let s = gamma * invStd
                for n in 0..<batch {
                    let o = n * stride + block
                    for i in 0..<HW { Vec.store(Vec.load(dy + o + i * B) * s, dx + o + i * B) }
                }
            }
        }
    }
}
