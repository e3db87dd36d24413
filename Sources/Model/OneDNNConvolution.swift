import CDNNL

/// How oneDNN computes a convolution (`--conv-algo`). Winograd applies to 3×3 stride-1 dense
/// convolutions only (others run direct); its results differ from direct by ~1e-6 relative.
/// `auto` (the default) runs Winograd where it is measured faster here and direct elsewhere.
public enum ConvAlgorithm: String, CaseIterable, Sendable {
    case direct, winograd, auto

    /// What runs `g`. Per layer shape (oneDNN's own `convolution_auto` picks Winograd for every
    /// 3×3 stride-1 shape; measured per primitive with DNNL_VERBOSE on refcnn and resnet18, AVX-512,
    /// 1 thread, forward + backward-data + backward-weights, ms direct → Winograd):
    /// 32→64 at 16×16 7.1 → 5.1, 64→64 at 16×16 14.0 → 9.2, 64→128 at 8×8 6.9 → 4.9 (batch 64);
    /// but 3→32 at 32×32 1.2 → 8.0, 256→256 at 4×4 6.8 → 6.8, 512→512 at 2×2 10.5 → 27.4 (batch 32).
    /// So `auto` takes Winograd from 16 input channels and an 8×8 output up.
    public func runsWinograd(_ g: ConvGeometry) -> Bool {
        let applies = g.kernel == 3 && g.stride == 1 && g.groups == 1
        switch self {
        case .direct: return false
        case .winograd: return applies
        case .auto: return applies && g.input.channels >= 16 && g.outHeight >= 8 && g.outWidth >= 8
        }
    }
}

/// Convolutions on oneDNN: forward-training, backward-data and backward-weights primitives per
/// layer shape (and batch size), created once with `format_tag::any` so oneDNN picks its fast
/// blocked layouts, with scratchpads allocated up front. Dense, grouped and depthwise
/// convolutions all go through the same primitives.
///
/// Activations: in a network with `layout` = blocked16 each convolution reads and writes
/// nChw16c where 16 divides the channels (the first convolution reads the planar input), so the
/// other layers work on it too and nothing is converted between layers; with `planar` (and for a
/// kernel made without layouts) it reads and writes NCHW and reorders inside.
///
/// Weights: with `blockedWeights` (the default) the parameter store keeps each convolution's
/// weights, gradients and optimizer state in the format the forward primitive chooses
/// (e.g. OIhw16i16o; `weightLayout`), so the forward pass reads them as they are and the
/// weight gradient is written in place; only backward-data reorders them (into its own
/// OIhw16o16i-like format). Checkpoints and exports stay OIHW (`ParameterLayout`).
public struct OneDNNBackend: ConvolutionBackend {
    public let name = "onednn"
    public var algorithm: ConvAlgorithm
    public var layout: ActivationLayout
    public var blockedWeights: Bool
    public init(algorithm: ConvAlgorithm = .auto, layout: ActivationLayout = .blocked16, blockedWeights: Bool = true) {
        self.algorithm = algorithm; self.layout = layout; self.blockedWeights = blockedWeights
    }
    public func makeKernel(_ geometry: ConvGeometry, maxBatch: Int) -> ConvolutionKernel {
        OneDNNConvKernel(geometry, algorithm: algorithm, maxBatch: maxBatch, input: .planar, output: .planar, weights: nil)
    }
    public func layouts(_ g: ConvGeometry, offered: ActivationLayout) -> (input: ActivationLayout, output: ActivationLayout) {
        // Reads what it is offered when it can (the first convolution reads the planar input:
        // oneDNN has kernels for that), so a chain of layers never needs a conversion.
        (ActivationLayout.blocked(if: layout == .blocked16 && offered == .blocked16, g.input),
         ActivationLayout.blocked(if: layout == .blocked16, g.output))
    }
    /// The batch size whose forward primitive decides the stored weight format. The format
    /// depends on the shape and the machine, not on the batch (a kernel at another batch size
    /// that wants another format reorders, as with OIHW).
    static let layoutProbeBatch = 32

    /// The format the forward primitive wants (nil without `blockedWeights`, or when that
    /// format is OIHW itself or padded).
    public func weightLayout(_ g: ConvGeometry) -> ParameterLayout? {
        guard blockedWeights else { return nil }
        let shape = OneDNNConvShape(g, batch: Self.layoutProbeBatch)
        let (pd, _) = shape.build(algorithm) { shape.forward($0) }
        defer { dnnl_primitive_desc_destroy(pd) }
        return DNNLParameterLayout(native: OneDNN.query(pd, dnnl_query_weights_md), canonical: shape.canonicalWeights,
                                   letters: g.groups > 1 ? "goihw" : "oihw")
    }
    public func makeKernel(_ geometry: ConvGeometry, maxBatch: Int, input: ActivationLayout, output: ActivationLayout,
                           weights: ParameterLayout?) -> ConvolutionKernel {
        OneDNNConvKernel(geometry, algorithm: algorithm, maxBatch: maxBatch, input: input, output: output,
                         weights: weights.map { $0 as! DNNLParameterLayout })
    }
}

extension ActivationLayout {
    var dnnlTag: dnnl_format_tag_t { self == .planar ? dnnl_nchw : dnnl_nChw16c }
}

final class OneDNNConvKernel: ConvolutionKernel {
    let g: ConvGeometry
    let algorithm: ConvAlgorithm
    let input: ActivationLayout, output: ActivationLayout
    /// The order of the weights and their gradients (nil: OIHW).
    let weightLayout: DNNLParameterLayout?
    private let stream = DNNLStream()
    /// Primitives per batch size: the prepared maximum at once, a smaller (last) batch on first use.
    private var plans: [Int: OneDNNConvPlan] = [:]
    private let maxBatch: Int

    init(_ g: ConvGeometry, algorithm: ConvAlgorithm, maxBatch: Int, input: ActivationLayout, output: ActivationLayout,
         weights: DNNLParameterLayout?) {
        self.g = g
        self.algorithm = algorithm
        self.input = input; self.output = output
        weightLayout = weights
        self.maxBatch = maxBatch
        plans[maxBatch] = makePlan(maxBatch)
    }

    private func makePlan(_ batch: Int) -> OneDNNConvPlan {
        OneDNNConvPlan(OneDNNConvShape(g, batch: batch), algorithm: algorithm, srcTag: input.dnnlTag, dstTag: output.dnnlTag,
                       weights: weightLayout?.native)
    }

    @inline(__always) private func plan(_ batch: Int) -> OneDNNConvPlan {
        if let p = plans[batch] { return p }
        let p = makePlan(batch)
        plans[batch] = p
        return p
    }

    /// Which of the weight tensors are reordered per call at the prepared batch size: forward,
    /// backward-data, and the weight gradient (into zeroed gradients at `dWeight`).
    func weightReorders(dWeight: UnsafeRawPointer) -> (forward: Bool, backwardData: Bool, backwardWeights: Bool) {
        let p = plans[maxBatch]!
        return (p.weights.needsReorder, p.dataWeights.needsReorder, !p.diffWeights.writesInPlace(at: dWeight))
    }

    /// The algorithm each pass actually runs (Winograd falls back to direct where unsupported).
    var winograd: (forward: Bool, backwardData: Bool, backwardWeights: Bool) {
        let p = plans[maxBatch]!, w = dnnl_convolution_winograd
        return (p.forwardAlgorithm == w, p.backwardDataAlgorithm == w, p.backwardWeightsAlgorithm == w)
    }

    func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 y: UnsafeMutablePointer<Float>, batch: Int) {
        let p = plan(batch), s = stream.stream
        precondition((bias != nil) == g.bias, "oneDNN convolution made \(g.bias ? "with" : "without") a bias")
        p.src.load(x, s)
        p.weights.load(weight, s)
        if let bias { p.bias?.load(bias, s) }
        p.dst.target(y)
        p.forward.run(s)
        p.dst.store(s)
        stream.wait()
    }

    func backwardData(dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                      dx: UnsafeMutablePointer<Float>, batch: Int) {
        let p = plan(batch), s = stream.stream
        p.dataDiffDst.load(dy, s)
        p.dataWeights.load(weight, s)
        p.diffSrc.target(dx)
        p.backwardData.run(s)
        p.diffSrc.store(s)
        stream.wait()
    }

    func backwardWeights(x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, batch: Int,
                         dWeightIsZero: Bool) {
        let p = plan(batch), s = stream.stream
        p.weightsSrc.load(x, s)
        p.weightsDiffDst.load(dy, s)
        p.diffWeights.target(dWeight, accumulate: !dWeightIsZero)
        p.backwardWeights.run(s)
        p.diffWeights.store(s)   // dWeight (+)= diff weights, reordered where the formats differ
        stream.wait()
        if let dBias, let diffBias = p.diffBias {
            let db = diffBias.pointer
            for c in 0..<g.outChannels { dBias[c] += db[c] }
        }
    }
}

/// The three primitives of one convolution shape at one batch size, and their memories.
/// A convolution without a bias gets primitives without one (no bias add forward, no bias
/// reduction in backward-weights).
final class OneDNNConvPlan {
    let forward: DNNLPrimitive, backwardData: DNNLPrimitive, backwardWeights: DNNLPrimitive
    let src: DNNLStaged, weights: DNNLStaged, bias: DNNLStaged?, dst: DNNLStaged
    let dataDiffDst: DNNLStaged, dataWeights: DNNLStaged, diffSrc: DNNLStaged
    let weightsSrc: DNNLStaged, weightsDiffDst: DNNLStaged, diffWeights: DNNLStaged
    let diffBias: DNNLMemory?
    let forwardAlgorithm: dnnl_alg_kind_t, backwardDataAlgorithm: dnnl_alg_kind_t, backwardWeightsAlgorithm: dnnl_alg_kind_t
    /// One buffer behind the three primitives' scratchpads (they never run at the same time).
    private let scratch: UnsafeMutableRawPointer

    /// `weights`: the format the caller keeps weights and their gradients in (nil: OIHW).
    init(_ shape: OneDNNConvShape, algorithm: ConvAlgorithm, srcTag: dnnl_format_tag_t, dstTag: dnnl_format_tag_t,
         weights storedWeights: dnnl_memory_desc_t?) {
        let userSrc = OneDNN.desc(shape.srcDims, srcTag), userDst = OneDNN.desc(shape.dstDims, dstTag)
        let userW = storedWeights ?? shape.canonicalWeights
        let biasMd = shape.biasMd
        let withBias = shape.g.bias
        let (fwdPD, fa) = shape.build(algorithm) { shape.forward($0) }
        let (dataPD, da) = shape.build(algorithm) { shape.backwardData($0, hint: fwdPD) }
        let (weightsPD, wa) = shape.build(algorithm) { shape.backwardWeights($0, hint: fwdPD) }
        defer { dnnl_primitive_desc_destroy(fwdPD); dnnl_primitive_desc_destroy(dataPD); dnnl_primitive_desc_destroy(weightsPD) }
        (forwardAlgorithm, backwardDataAlgorithm, backwardWeightsAlgorithm) = (fa, da, wa)

        let pads = [fwdPD, dataPD, weightsPD].map { OneDNN.query($0, dnnl_query_scratchpad_md) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(64, pads.map(OneDNN.bytes).max()!), alignment: 64)
        scratch = buffer
        let scratchpads = pads.map { DNNLMemory($0, over: buffer) }

        src = DNNLStaged(user: userSrc, inner: OneDNN.query(fwdPD, dnnl_query_src_md), input: true)
        weights = DNNLStaged(user: userW, inner: OneDNN.query(fwdPD, dnnl_query_weights_md), input: true)
        let bias = withBias ? DNNLStaged(user: biasMd, inner: OneDNN.query(fwdPD, dnnl_query_weights_md, 1), input: true) : nil
        self.bias = bias
        dst = DNNLStaged(user: userDst, inner: OneDNN.query(fwdPD, dnnl_query_dst_md), input: false)
        forward = DNNLPrimitive(fwdPD, [(DNNL_ARG_SRC, src.inner), (DNNL_ARG_WEIGHTS, weights.inner)]
                                + (bias.map { [(DNNL_ARG_BIAS, $0.inner)] } ?? [])
                                + [(DNNL_ARG_DST, dst.inner), (DNNL_ARG_SCRATCHPAD, scratchpads[0])])

        dataDiffDst = DNNLStaged(user: userDst, inner: OneDNN.query(dataPD, dnnl_query_diff_dst_md), input: true)
        dataWeights = DNNLStaged(user: userW, inner: OneDNN.query(dataPD, dnnl_query_weights_md), input: true)
        diffSrc = DNNLStaged(user: userSrc, inner: OneDNN.query(dataPD, dnnl_query_diff_src_md), input: false)
        backwardData = DNNLPrimitive(dataPD, [(DNNL_ARG_DIFF_DST, dataDiffDst.inner), (DNNL_ARG_WEIGHTS, dataWeights.inner),
                                              (DNNL_ARG_DIFF_SRC, diffSrc.inner), (DNNL_ARG_SCRATCHPAD, scratchpads[1])])

        weightsSrc = DNNLStaged(user: userSrc, inner: OneDNN.query(weightsPD, dnnl_query_src_md), input: true)
        weightsDiffDst = DNNLStaged(user: userDst, inner: OneDNN.query(weightsPD, dnnl_query_diff_dst_md), input: true)
        diffWeights = DNNLStaged(user: userW, inner: OneDNN.query(weightsPD, dnnl_query_diff_weights_md), input: false,
                                 accumulate: true, inPlaceNeedsAlignment: wa == dnnl_convolution_winograd)
        let diffBias = withBias ? DNNLMemory(OneDNN.query(weightsPD, dnnl_query_diff_weights_md, 1)) : nil
        self.diffBias = diffBias
        backwardWeights = DNNLPrimitive(weightsPD, [(DNNL_ARG_SRC, weightsSrc.inner), (DNNL_ARG_DIFF_DST, weightsDiffDst.inner),
                                                    (DNNL_ARG_DIFF_WEIGHTS, diffWeights.inner)]
                                        + (diffBias.map { [(DNNL_ARG_DIFF_BIAS, $0)] } ?? [])
                                        + [(DNNL_ARG_SCRATCHPAD, scratchpads[2])])
    }

    deinit { scratch.deallocate() }
}

/// The oneDNN descriptions of one convolution shape at one batch size: dimensions, strides,
/// padding, and its three operations with `format_tag::any`.
struct OneDNNConvShape {
    let g: ConvGeometry
    let srcDims: [Int], dstDims: [Int], wDims: [Int]
    let strides: [Int64], padL: [Int64], padR: [Int64]

    init(_ g: ConvGeometry, batch: Int) {
        self.g = g
        srcDims = [batch, g.input.channels, g.input.height, g.input.width]
        dstDims = [batch, g.outChannels, g.outHeight, g.outWidth]
        wDims = g.groups > 1 ? [g.groups, g.groupOutChannels, g.groupInChannels, g.kernel, g.kernel]
                             : [g.outChannels, g.input.channels, g.kernel, g.kernel]
        strides = [Int64(g.stride), Int64(g.stride)]
        padL = [Int64(g.padding), Int64(g.padding)]
        // Right padding that makes oneDNN's output size formula exact (≤ padding when the
        // stride does not divide the padded extent evenly), as PyTorch passes it.
        padR = [Int64((g.outHeight - 1) * g.stride + g.kernel - g.input.height - g.padding),
                Int64((g.outWidth - 1) * g.stride + g.kernel - g.input.width - g.padding)]
    }

    /// The weights in PyTorch's order: OIHW, or GOIHW for a grouped convolution (the same memory).
    var canonicalWeights: dnnl_memory_desc_t { OneDNN.desc(wDims, g.groups > 1 ? dnnl_goihw : dnnl_oihw) }
    var biasMd: dnnl_memory_desc_t { OneDNN.desc([g.outChannels], dnnl_x) }

    /// Winograd only where it applies (and, for auto, pays); anything oneDNN cannot build runs direct.
    func build(_ algorithm: ConvAlgorithm, _ make: (dnnl_alg_kind_t) -> dnnl_primitive_desc_t?) -> (dnnl_primitive_desc_t, dnnl_alg_kind_t) {
        let wanted = algorithm.runsWinograd(g) ? dnnl_convolution_winograd : dnnl_convolution_direct
        if let pd = make(wanted) { return (pd, wanted) }
        guard let pd = make(dnnl_convolution_direct) else { fatalError("oneDNN: no convolution for \(g)") }
        return (pd, dnnl_convolution_direct)
    }

    func forward(_ alg: dnnl_alg_kind_t) -> dnnl_primitive_desc_t? {
        var (src, w, dst, bias) = anyDescs
        var d = dnnl_convolution_desc_t()
        let status = g.bias
            ? dnnl_convolution_forward_desc_init(&d, dnnl_forward_training, alg, &src, &w, &bias, &dst, strides, padL, padR)
            : dnnl_convolution_forward_desc_init(&d, dnnl_forward_training, alg, &src, &w, nil, &dst, strides, padL, padR)
        guard status == dnnl_success else { return nil }
        return OneDNN.primitiveDesc(&d)
    }

    func backwardData(_ alg: dnnl_alg_kind_t, hint: dnnl_primitive_desc_t) -> dnnl_primitive_desc_t? {
        var (src, w, dst, _) = anyDescs
        var d = dnnl_convolution_desc_t()
        guard dnnl_convolution_backward_data_desc_init(&d, alg, &src, &w, &dst, strides, padL, padR) == dnnl_success
        else { return nil }
        return OneDNN.primitiveDesc(&d, hint: hint)
    }

    func backwardWeights(_ alg: dnnl_alg_kind_t, hint: dnnl_primitive_desc_t) -> dnnl_primitive_desc_t? {
        var (src, w, dst, bias) = anyDescs
        var d = dnnl_convolution_desc_t()
        let status = g.bias
            ? dnnl_convolution_backward_weights_desc_init(&d, alg, &src, &w, &bias, &dst, strides, padL, padR)
            : dnnl_convolution_backward_weights_desc_init(&d, alg, &src, &w, nil, &dst, strides, padL, padR)
        guard status == dnnl_success else { return nil }
        return OneDNN.primitiveDesc(&d, hint: hint)
    }

    private var anyDescs: (dnnl_memory_desc_t, dnnl_memory_desc_t, dnnl_memory_desc_t, dnnl_memory_desc_t) {
        (OneDNN.desc(srcDims, dnnl_format_tag_any), OneDNN.desc(wDims, dnnl_format_tag_any),
         OneDNN.desc(dstDims, dnnl_format_tag_any), biasMd)
    }
}
