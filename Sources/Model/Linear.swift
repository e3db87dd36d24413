import COpenBLAS

/// Fully connected layer, PyTorch semantics: weight [out, in], bias [out]; y = x·Wᵀ + b.
/// x: [batch, in] (any per-sample shape is read as `in` = its element count) → y: [batch, out].
public final class Linear: FreezableLayer {
    public let kind = "linear"
    public let outFeatures: Int, hasBias: Bool
    public private(set) var inFeatures = 0
    /// Set by `Network.applyFineTuning`: no weight or bias gradients are computed.
    public internal(set) var frozen = false
    /// Initializer overrides (nil: PyTorch's default U(±1/sqrt(in)) for both).
    let weightInit: ParameterSpec.Initializer?, biasInit: ParameterSpec.Initializer?
    private var weight: UnsafeMutablePointer<Float>!, bias: UnsafeMutablePointer<Float>?
    private var dWeight: UnsafeMutablePointer<Float>!, dBias: UnsafeMutablePointer<Float>?

    public init(outFeatures: Int, bias: Bool = true,
                weightInit: ParameterSpec.Initializer? = nil, biasInit: ParameterSpec.Initializer? = nil) {
        self.outFeatures = outFeatures; self.hasBias = bias
        self.weightInit = weightInit; self.biasInit = biasInit
    }

    public func configure(input: FeatureShape) throws -> FeatureShape {
        guard outFeatures > 0 else { throw ModelError.invalidShape(layer: kind, input: input, reason: "no output features") }
        inFeatures = input.count
        return FeatureShape(features: outFeatures)
    }

    public var parameterSpecs: [ParameterSpec] {
        let bound = 1 / Float(inFeatures).squareRoot()
        var s = [ParameterSpec(name: "weight", count: outFeatures * inFeatures, initializer: weightInit ?? .uniform(bound: bound),
                               decays: true, shape: [outFeatures, inFeatures])]
        if hasBias {
            s.append(ParameterSpec(name: "bias", count: outFeatures, initializer: biasInit ?? .uniform(bound: bound), decays: false))
        }
        return s
    }

    public func bind(_ b: ParameterBinding) {
        weight = b.parameters[0]; dWeight = b.gradients[0]
        if hasBias { bias = b.parameters[1]; dBias = b.gradients[1] }
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        guard batch > 0 else { return }
        var beta: Float = 0
        if let bias {
            for n in 0..<batch { (y + n * outFeatures).update(from: bias, count: outFeatures) }
            beta = 1
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(batch), Int32(outFeatures), Int32(inFeatures),
                    1, x, Int32(inFeatures), weight, Int32(inFeatures), beta, y, Int32(outFeatures))
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        guard batch > 0 else { return }
        if !frozen { accumulateWeightGradients(x: x, dy: dy, batch: batch) }
        if let dx {
            // dx [batch, in] = dy [batch, out] · W [out, in]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(batch), Int32(inFeatures), Int32(outFeatures),
                        1, dy, Int32(outFeatures), weight, Int32(inFeatures), 0, dx, Int32(inFeatures))
        }
    }

    private func accumulateWeightGradients(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, batch: Int) {
        // dW [out, in] += dyᵀ [out, batch] · x [batch, in]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(outFeatures), Int32(inFeatures), Int32(batch),
                    1, dy, Int32(outFeatures), x, Int32(inFeatures), 1, dWeight, Int32(inFeatures))
        if let dBias {
            for n in 0..<batch {
                let row = dy + n * outFeatures
                for o in 0..<outFeatures { dBias[o] += row[o] }
            }
        }
    }
}
