import COpenBLAS

/// Portable convolution: planar NCHW activations, one image at a time through im2col and an
/// OpenBLAS sgemm (one GEMM per image measured faster than batching images into one GEMM here);
/// grouped convolutions run one GEMM per group, depthwise ones (groups = channels) direct loops.
public struct Im2colGEMMBackend: ConvolutionBackend {
    public let name = "openblas"
    public init() {}
    public func makeKernel(_ geometry: ConvGeometry, maxBatch: Int) -> ConvolutionKernel {
        let depthwise = geometry.groups > 1 && geometry.groups == geometry.input.channels && geometry.groups == geometry.outChannels
        return depthwise ? DepthwiseKernel(geometry) : Im2colGEMMKernel(geometry)
    }
}

final class Im2colGEMMKernel: ConvolutionKernel {
    let g: ConvGeometry
    /// [patch, outHeight*outWidth]; empty for 1×1/stride 1/no padding, where x itself is the matrix.
    let columns: UnsafeMutablePointer<Float>
    let direct: Bool
    let ones: UnsafeMutablePointer<Float>

    init(_ g: ConvGeometry) {
        self.g = g
        direct = g.kernel == 1 && g.stride == 1 && g.padding == 0
        let n = direct ? 1 : g.patch * g.outHeight * g.outWidth
        columns = .allocate(capacity: n)
        columns.initialize(repeating: 0, count: n)
        let p = g.outHeight * g.outWidth
        ones = .allocate(capacity: p)
        ones.initialize(repeating: 1, count: p)
    }

    deinit { columns.deallocate(); ones.deallocate() }

    private var pixels: Int { g.outHeight * g.outWidth }

    // Group i's weight rows are [i·Og, (i+1)·Og) (each `patch` long), its input channels
    // [i·Cg, (i+1)·Cg) and its output channels [i·Og, (i+1)·Og); groups = 1 is one dense GEMM.

    func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 y: UnsafeMutablePointer<Float>, batch: Int) {
        let og = g.groupOutChannels, cg = g.groupInChannels, hw = g.input.plane
        let m = Int32(og), n = Int32(pixels), k = Int32(g.patch)
        let inCount = g.input.count, outCount = g.output.count
        for i in 0..<batch {
            let xi = x + i * inCount, yi = y + i * outCount
            var beta: Float = 0
            if let bias {
                for c in 0..<g.outChannels { (yi + c * pixels).update(repeating: bias[c], count: pixels) }
                beta = 1
            }
            for group in 0..<g.groups {
                let cols = matrix(for: xi + group * cg * hw)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, weight + group * og * g.patch, k,
                            cols, n, beta, yi + group * og * pixels, n)
            }
        }
    }

    func backwardData(dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                      dx: UnsafeMutablePointer<Float>, batch: Int) {
        let og = g.groupOutChannels, cg = g.groupInChannels, hw = g.input.plane
        let m = Int32(g.patch), n = Int32(pixels), k = Int32(og)
        let inCount = g.input.count, outCount = g.output.count
        for i in 0..<batch {
            for group in 0..<g.groups {
                let dxg = dx + i * inCount + group * cg * hw, dyg = dy + i * outCount + group * og * pixels
                let wg = weight + group * og * g.patch
                if direct {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, 1, wg, m, dyg, n, 0, dxg, n)
                } else {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, 1, wg, m, dyg, n, 0, columns, n)
                    col2im(columns, into: dxg)
                }
            }
        }
    }

    func backwardWeights(x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, batch: Int,
                         dWeightIsZero: Bool) {
        let og = g.groupOutChannels, cg = g.groupInChannels, hw = g.input.plane
        let m = Int32(og), n = Int32(g.patch), k = Int32(pixels)
        let inCount = g.input.count, outCount = g.output.count
        for i in 0..<batch {
            let xi = x + i * inCount, dyi = dy + i * outCount
            for group in 0..<g.groups {
                let cols = matrix(for: xi + group * cg * hw)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, dyi + group * og * pixels, k, cols, k,
                            dWeightIsZero && i == 0 ? 0 : 1, dWeight + group * og * g.patch, n)
            }
            if let dBias {
                // dBias[c] += sum_p dy[c, p]  (a GEMV against a vector of ones)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(g.outChannels), k, 1, dyi, k, ones, 1, 1, dBias, 1)
            }
        }
    }

    /// The [patch, pixels] matrix for one group of one image (`xg` points at the group's first
    /// channel): xg itself for a pointwise convolution, else the im2col columns.
    private func matrix(for xg: UnsafePointer<Float>) -> UnsafePointer<Float> {
        if direct { return xg }
        im2col(xg, into: columns)
        return UnsafePointer(columns)
    }

    /// cols[(c*k + ki)*k + kj][oh*OW + ow] = x[c][oh*s - p + ki][ow*s - p + kj] (0 outside),
    /// over the `groupInChannels` channels starting at `x`.
    private func im2col(_ x: UnsafePointer<Float>, into cols: UnsafeMutablePointer<Float>) {
        let H = g.input.height, W = g.input.width, K = g.kernel, S = g.stride, P = g.padding
        let OH = g.outHeight, OW = g.outWidth
        var row = cols
        for c in 0..<g.groupInChannels {
            let plane = x + c * H * W
            for ki in 0..<K {
                for kj in 0..<K {
                    // Output columns whose input column iw = ow*S - P + kj lies inside [0, W).
                    let owStart = max(0, (P - kj + S - 1) / S)
                    // (Swift's / truncates toward zero: a tap right of a narrow plane's edge,
                    // W − 1 + P − kj < 0, has no columns.)
                    let owEnd = W - 1 + P - kj < 0 ? 0 : min(OW, (W - 1 + P - kj) / S + 1)
                    for oh in 0..<OH {
                        let dst = row + oh * OW
                        let ih = oh * S - P + ki
                        if ih < 0 || ih >= H || owEnd <= owStart {
                            dst.update(repeating: 0, count: OW)
                            continue
                        }
                        if owStart > 0 { dst.update(repeating: 0, count: owStart) }
                        let src = plane + ih * W - P + kj
                        if S == 1 {
                            (dst + owStart).update(from: src + owStart, count: owEnd - owStart)
                        } else {
                            for ow in owStart..<owEnd { dst[ow] = src[ow * S] }
                        }
                        if owEnd < OW { (dst + owEnd).update(repeating: 0, count: OW - owEnd) }
                    }
                    row += OH * OW
                }
            }
        }
    }

    /// The adjoint of im2col: dx[c][ih][iw] = sum of the columns that read it (one group's channels).
    private func col2im(_ cols: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>) {
        let H = g.input.height, W = g.input.width, K = g.kernel, S = g.stride, P = g.padding
        let OH = g.outHeight, OW = g.outWidth
        dx.update(repeating: 0, count: g.groupInChannels * H * W)
        var row = cols
        for c in 0..<g.groupInChannels {
            let plane = dx + c * H * W
            for ki in 0..<K {
                for kj in 0..<K {
                    let owStart = max(0, (P - kj + S - 1) / S)
                    // (Swift's / truncates toward zero: a tap right of a narrow plane's edge,
                    // W − 1 + P − kj < 0, has no columns.)
                    let owEnd = W - 1 + P - kj < 0 ? 0 : min(OW, (W - 1 + P - kj) / S + 1)
                    if owEnd > owStart {
                        for oh in 0..<OH {
                            let ih = oh * S - P + ki
                            if ih < 0 || ih >= H { continue }
                            let src = row + oh * OW
                            let dst = plane + ih * W - P + kj
                            if S == 1 {
                                for ow in owStart..<owEnd { dst[ow] += src[ow] }
                            } else {
                                for ow in owStart..<owEnd { dst[ow * S] += src[ow] }
                            }
                        }
                    }
                    row += OH * OW
                }
            }
        }
    }
}
