/// Depthwise convolution (groups = in = out channels) by direct loops over each channel's plane.
///
/// The grouped im2col path would run one 1-row GEMM per channel; here each kernel tap is a
/// scaled, shifted add of one plane into another, which the compiler vectorises for stride 1.
/// Same NCHW layout and results as `Im2colGEMMKernel` (tested against it).
final class DepthwiseKernel: ConvolutionKernel {
    let g: ConvGeometry

    init(_ g: ConvGeometry) {
        precondition(g.groups == g.input.channels && g.groups == g.outChannels, "not a depthwise geometry")
        self.g = g
    }

    /// The output columns ow whose input column ow·S − P + kj lies inside [0, W).
    @inline(__always) private func columns(_ kj: Int) -> Range<Int> {
        let S = g.stride, P = g.padding
        // (/ truncates toward zero: a tap right of a narrow plane's edge has no columns.)
        let reach = g.input.width - 1 + P - kj
        let start = max(0, (P - kj + S - 1) / S), end = reach < 0 ? 0 : min(g.outWidth, reach / S + 1)
        return start..<max(start, end)
    }

    /// Calls body(ki, kj, oh, ih, ows) for every kernel tap and output row with an input row inside.
    @inline(__always) private func taps(_ body: (Int, Int, Int, Int, Range<Int>) -> Void) {
        let K = g.kernel, S = g.stride, P = g.padding, H = g.input.height
        for ki in 0..<K {
            for kj in 0..<K {
                let ows = columns(kj)
                if ows.isEmpty { continue }
                for oh in 0..<g.outHeight {
                    let ih = oh * S - P + ki
                    if ih < 0 || ih >= H { continue }
                    body(ki, kj, oh, ih, ows)
                }
            }
        }
    }

    func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 y: UnsafeMutablePointer<Float>, batch: Int) {
        let C = g.input.channels, W = g.input.width, OW = g.outWidth, S = g.stride, P = g.padding, K = g.kernel
        let inPlane = g.input.plane, outPlane = g.outHeight * OW
        for n in 0..<batch {
            for c in 0..<C {
                let xp = x + (n * C + c) * inPlane, yp = y + (n * C + c) * outPlane, wc = weight + c * K * K
                yp.update(repeating: bias?[c] ?? 0, count: outPlane)
                taps { ki, kj, oh, ih, ows in
                    let w = wc[ki * K + kj], dst = yp + oh * OW, src = xp + ih * W - P + kj
                    if S == 1 { for ow in ows { dst[ow] += w * src[ow] } } else { for ow in ows { dst[ow] += w * src[ow * S] } }
                }
            }
        }
    }

    func backwardData(dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                      dx: UnsafeMutablePointer<Float>, batch: Int) {
        let C = g.input.channels, W = g.input.width, OW = g.outWidth, S = g.stride, P = g.padding, K = g.kernel
        let inPlane = g.input.plane, outPlane = g.outHeight * OW
        for n in 0..<batch {
            for c in 0..<C {
                let dxp = dx + (n * C + c) * inPlane, dyp = dy + (n * C + c) * outPlane, wc = weight + c * K * K
                dxp.update(repeating: 0, count: inPlane)
                taps { ki, kj, oh, ih, ows in
                    let w = wc[ki * K + kj], src = dyp + oh * OW, dst = dxp + ih * W - P + kj
                    if S == 1 { for ow in ows { dst[ow] += w * src[ow] } } else { for ow in ows { dst[ow * S] += w * src[ow] } }
                }
            }
        }
    }

    func backwardWeights(x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, batch: Int,
                         dWeightIsZero: Bool) {
        let C = g.input.channels, W = g.input.width, OW = g.outWidth, S = g.stride, P = g.padding, K = g.kernel
        let inPlane = g.input.plane, outPlane = g.outHeight * OW
        for n in 0..<batch {
            for c in 0..<C {
                let xp = x + (n * C + c) * inPlane, dyp = dy + (n * C + c) * outPlane, dwc = dWeight + c * K * K
                taps { ki, kj, oh, ih, ows in
                    let g = dyp + oh * OW, src = xp + ih * W - P + kj
                    var s: Float = 0
                    if S == 1 { for ow in ows { s += g[ow] * src[ow] } } else { for ow in ows { s += g[ow] * src[ow * S] } }
                    dwc[ki * K + kj] += s
                }
                if let dBias { dBias[c] += Vec.sum(dyp, outPlane) }
            }
        }
    }
}
