/// Batch normalisation over (batch, height, width) per channel, PyTorch semantics:
/// weight (γ) [C] = 1, bias (β) [C] = 0; state running_mean [C] = 0, running_var [C] = 1,
/// momentum 0.1, eps 1e-5; the running variance uses the unbiased batch variance.
///
/// x, y: [batch, C, H, W]. In `.train` mode normalises with the batch's statistics (this rank's
/// slice of the global batch under data parallelism, as PyTorch DDP does without SyncBatchNorm);
/// in `.eval` mode with the running statistics. Also used for flat features (H = W = 1).
/// A `frozen` BatchNorm (fine-tuning) always behaves as in `.eval` mode: running statistics
/// untouched, no γ/β gradients.
///
/// With `activation` set (it absorbed the ReLU/ReLU6/SiLU after it; see BatchNormActivation.swift)
/// y = act(bn(x)), and backward takes dy w.r.t. that y. One implementation serves both
/// layouts: the per-channel work is done on 16-lane vectors, which in the blocked layout are
/// 16 channels and in the planar layout 16 pixels of one channel (then summed across lanes).
public final class BatchNorm2d: FreezableLayer {
    public let kind = "batchnorm2d"
    public let momentum: Float, eps: Float
    public private(set) var shape = FeatureShape(features: 0)
    /// Set by `Network.applyFineTuning`.
    public internal(set) var frozen = false
    private var gamma: UnsafeMutablePointer<Float>!, beta: UnsafeMutablePointer<Float>!
    private var dGamma: UnsafeMutablePointer<Float>!, dBeta: UnsafeMutablePointer<Float>!
    private var runningMean: UnsafeMutablePointer<Float>!, runningVar: UnsafeMutablePointer<Float>!
    /// Saved by forward for backward: per-channel mean and 1/sqrt(var + eps) actually used.
    private var savedMean: UnsafeMutablePointer<Float>!, savedInvStd: UnsafeMutablePointer<Float>!
    /// The activation layout (negotiated by the network; planar by default).
    public private(set) var layout = ActivationLayout.planar
    /// The activation applied after normalising (nil: none), set when the layer absorbs the
    /// activation layer after it (before `prepare`).
    public internal(set) var activation: FusedActivation?

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
        let runs = Runs(shape, layout)
        if mode == .train && !frozen && batch > 0 {
            computeStatistics(x, runs, batch: batch)
        } else {
            for c in 0..<shape.channels {
                savedMean[c] = runningMean[c]
                savedInvStd[c] = 1 / (runningVar[c] + eps).squareRoot()
            }
        }
        switch activation {
        case nil: normalize(IdentityActivation.self, x, y, runs, batch: batch)
        case .relu: normalize(ReLUActivation.self, x, y, runs, batch: batch)
        case .relu6: normalize(ReLU6Activation.self, x, y, runs, batch: batch)
        case .silu: normalize(SiLUActivation.self, x, y, runs, batch: batch)
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        guard batch > 0 else { return }
        let runs = Runs(shape, layout)
        switch activation {
        case nil: backward(IdentityActivation.self, x, dy, dx, runs, batch: batch, mode: mode)
        case .relu: backward(ReLUActivation.self, x, dy, dx, runs, batch: batch, mode: mode)
        case .relu6: backward(ReLU6Activation.self, x, dy, dx, runs, batch: batch, mode: mode)
        case .silu: backward(SiLUActivation.self, x, dy, dx, runs, batch: batch, mode: mode)
        }
    }

    private typealias V = SIMD16<Float>

    /// How a batch splits into per-channel runs: run (n, g) starts at n·stride + g·length and
    /// holds channel g's HW values (planar) or channels 16g…16g+15 interleaved (blocked).
    private struct Runs {
        let groups: Int, length: Int, stride: Int, blocked: Bool
        init(_ shape: FeatureShape, _ layout: ActivationLayout) {
            blocked = layout == .blocked16
            let B = ActivationLayout.block
            groups = blocked ? shape.channels / B : shape.channels
            length = blocked ? shape.plane * B : shape.plane
            stride = shape.count
        }
        @inline(__always) func offset(_ n: Int, _ g: Int) -> Int { n * stride + g * length }
        /// The per-channel values of group g as lanes (planar: channel g's value in every lane).
        @inline(__always) func load(_ p: UnsafePointer<Float>, _ g: Int) -> V {
            blocked ? Vec.load(p + g * ActivationLayout.block) : V(repeating: p[g])
        }
        @inline(__always) func store(_ v: V, _ p: UnsafeMutablePointer<Float>, _ g: Int) {
            if blocked { Vec.store(v, p + g * ActivationLayout.block) } else { p[g] = v[0] }
        }
        /// A run's vector accumulator as per-channel lanes (planar: the lanes and the scalar tail summed).
        @inline(__always) func collapse(_ acc: V, tail: Float) -> SIMD16<Double> {
            blocked ? SIMD16<Double>(acc) : SIMD16<Double>(repeating: Double(acc.sum() + tail))
        }
    }

    /// Batch mean and 1/sqrt(var + eps) into savedMean/savedInvStd; running statistics updated.
    ///
    /// One pass over x: Σd and Σd² of d = x − k, k the channel's mean over the first sample (a
    /// 1/batch extra read, close to the batch mean), so mean² does not swamp the variance:
    /// var = Σd²/m − (Σd/m)², and the cancellation left grows only with ((k − mean)/std)².
    private func computeStatistics(_ x: UnsafePointer<Float>, _ runs: Runs, batch: Int) {
        let L = runs.length, vectorEnd = L & ~15
        let m = batch * shape.plane
        for g in 0..<runs.groups {
            let first = x + runs.offset(0, g)
            var ka = V(), kt: Float = 0, j = 0
            while j < vectorEnd { ka += Vec.load(first + j); j += 16 }
            while j < L { kt += first[j]; j += 1 }
            let k = V(runs.collapse(ka, tail: kt) / Double(shape.plane))
            var sum = SIMD16<Double>(), sq = SIMD16<Double>()
            for n in 0..<batch {
                let p = x + runs.offset(n, g)
                var a = V(), b = V(), ta: Float = 0, tb: Float = 0, i = 0
                while i < vectorEnd { let d = Vec.load(p + i) - k; a += d; b.addProduct(d, d); i += 16 }
                while i < L { let d = p[i] - k[0]; ta += d; tb += d * d; i += 1 }
                sum += runs.collapse(a, tail: ta); sq += runs.collapse(b, tail: tb)
            }
            let shifted = sum / Double(m)
            let mu = SIMD16<Double>(k) + shifted, muF = V(mu)
            let raw = sq / Double(m) - shifted * shifted
            let variance = raw.replacing(with: 0, where: raw .< 0)
            let invStd = V(1 / (variance + Double(eps)).squareRoot())
            let unbiased = V(m > 1 ? variance * (Double(m) / Double(m - 1)) : variance)
            runs.store(muF, savedMean, g); runs.store(invStd, savedInvStd, g)
            runs.store((1 - momentum) * runs.load(runningMean, g) + momentum * muF, runningMean, g)
            runs.store((1 - momentum) * runs.load(runningVar, g) + momentum * unbiased, runningVar, g)
        }
    }

    /// The per-channel affine map of the forward pass: z = x·scale + shift.
    @inline(__always) private func affine(_ runs: Runs, _ g: Int) -> (scale: V, shift: V) {
        let scale = runs.load(gamma, g) * runs.load(savedInvStd, g)
        return (scale, runs.load(beta, g) - runs.load(savedMean, g) * scale)
    }

    /// y = act(x·scale + shift) with the saved statistics.
    private func normalize<A: PointwiseActivation>(_: A.Type, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                                   _ runs: Runs, batch: Int) {
        let L = runs.length, vectorEnd = L & ~15
        for g in 0..<runs.groups {
            let (scale, shift) = affine(runs, g)
            for n in 0..<batch {
                let o = runs.offset(n, g), p = x + o, q = y + o
                var i = 0
                while i < vectorEnd { Vec.store(A.apply(Vec.load(p + i) * scale + shift), q + i); i += 16 }
                while i < L { q[i] = A.apply(p[i] * scale[0] + shift[0]); i += 1 }
            }
        }
    }

    /// With g = act'(z)·dy (z recomputed from x; for an expensive act'(z) computed once and kept
    /// in dx between the passes):
    /// - train: dγ += Σ g·xhat, dβ += Σ g, dx = γ·invStd/m · (m·g − Σg − xhat·Σ(g·xhat));
    /// - eval: the same dγ, dβ, dx = γ·invStd·g; frozen: only dx = γ·invStd·g.
    private func backward<A: PointwiseActivation>(_: A.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                                  _ dx: UnsafeMutablePointer<Float>?, _ runs: Runs, batch: Int, mode: Mode) {
        let L = runs.length, vectorEnd = L & ~15
        let m = Float(batch * shape.plane)
        let keep = !A.cheap && dx != nil && !frozen   // g stored in dx by the first pass
        for g in 0..<runs.groups {
            let (scale, shift) = affine(runs, g)
            if frozen {
                // Eval-mode normalisation is affine per channel: dx = γ·invStd·g, nothing else.
                guard let dx else { continue }
                for n in 0..<batch {
                    let o = runs.offset(n, g), p = x + o, d = dy + o, q = dx + o
                    var i = 0
                    while i < vectorEnd {
                        Vec.store(A.gradient(Vec.load(p + i) * scale + shift, Vec.load(d + i)) * scale, q + i); i += 16
                    }
                    while i < L { q[i] = A.gradient(p[i] * scale[0] + shift[0], d[i]) * scale[0]; i += 1 }
                }
                continue
            }
            let mean = runs.load(savedMean, g), invStd = runs.load(savedInvStd, g)
            // Σg and Σ g·(x − mean)
            var sumG = SIMD16<Double>(), sumGXc = SIMD16<Double>()
            for n in 0..<batch {
                let o = runs.offset(n, g), p = x + o, d = dy + o
                var a = V(), b = V(), ta: Float = 0, tb: Float = 0, i = 0
                while i < vectorEnd {
                    let xv = Vec.load(p + i), gv = A.gradient(xv * scale + shift, Vec.load(d + i))
                    if keep { Vec.store(gv, dx! + o + i) }
                    a += gv; b.addProduct(gv, xv - mean); i += 16
                }
                while i < L {
                    let gs = A.gradient(p[i] * scale[0] + shift[0], d[i])
                    if keep { dx![o + i] = gs }
                    ta += gs; tb += gs * (p[i] - mean[0]); i += 1
                }
                sumG += runs.collapse(a, tail: ta); sumGXc += runs.collapse(b, tail: tb)
            }
            let sG = V(sumG), sGXhat = V(sumGXc) * invStd
            runs.store(runs.load(dGamma, g) + sGXhat, dGamma, g)
            runs.store(runs.load(dBeta, g) + sG, dBeta, g)
            guard let dx else { continue }
            // dx = a·g + b + cx·(x − mean); eval: a = γ·invStd, b = cx = 0.
            let train = mode == .train
            let k = scale / m
            let a = train ? k * m : scale, b = train ? -k * sG : V(), cx = train ? -k * sGXhat * invStd : V()
            for n in 0..<batch {
                let o = runs.offset(n, g), p = x + o, d = dy + o, q = dx + o
                var i = 0
                while i < vectorEnd {
                    let xv = Vec.load(p + i)
                    let gv = keep ? Vec.load(q + i) : A.gradient(xv * scale + shift, Vec.load(d + i))
                    Vec.store(a * gv + b + cx * (xv - mean), q + i); i += 16
                }
                while i < L {
                    let gs = keep ? q[i] : A.gradient(p[i] * scale[0] + shift[0], d[i])
                    q[i] = a[0] * gs + b[0] + cx[0] * (p[i] - mean[0]); i += 1
                }
            }
        }
    }
}

/// The same arithmetic on the blocked layout (see `Runs`).
extension BatchNorm2d: LayoutNegotiating {
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) {
        layout = ActivationLayout.blocked(if: offered == .blocked16, shape)
        return (layout, layout)
    }
}
