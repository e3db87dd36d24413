/// Max pooling with a square window (PyTorch `MaxPool2d(k, stride, padding)`, floor mode;
/// padding counts as −∞, so it never wins).
///
/// x: [batch, C, H, W] → y: [batch, C, (H + 2p − k)/s + 1, (W + 2p − k)/s + 1]. Forward records the
/// position of each maximum (first one on ties) so backward routes the gradient there (on the
/// blocked layout, windows that tile the input write dx in one pass).
public final class MaxPool2d: Layer {
    public let kind = "maxpool2d"
    public let kernel: Int, stride: Int, padding: Int
    private var input = FeatureShape(features: 0), output = FeatureShape(features: 0)
    /// [batch, C, OH, OW] index of the max within its input plane.
    private var argmax: UnsafeMutablePointer<Int32>?
    /// The activation layout (negotiated by the network; planar by default).
    private var layout = ActivationLayout.planar

    public init(kernel: Int = 2, stride: Int? = nil, padding: Int = 0) {
        self.kernel = kernel; self.stride = stride ?? kernel; self.padding = padding
    }
    deinit { argmax?.deallocate() }

    public func configure(input: FeatureShape) throws -> FeatureShape {
        guard kernel >= 1, stride >= 1, padding >= 0, 2 * padding <= kernel else {
            throw ModelError.invalidShape(layer: kind, input: input,
                                          reason: "window \(kernel), stride \(stride), padding \(padding): padding must be at most half the window")
        }
        guard input.height + 2 * padding >= kernel, input.width + 2 * padding >= kernel else {
            throw ModelError.invalidShape(layer: kind, input: input, reason: "window \(kernel) larger than the input")
        }
        self.input = input
        output = FeatureShape(channels: input.channels, height: (input.height + 2 * padding - kernel) / stride + 1,
                              width: (input.width + 2 * padding - kernel) / stride + 1)
        return output
    }

    public func prepare(maxBatch: Int) {
        argmax?.deallocate()
        let n = max(1, maxBatch * output.count)
        argmax = .allocate(capacity: n)
        argmax!.initialize(repeating: 0, count: n)
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        let H = input.height, W = input.width, OH = output.height, OW = output.width, K = kernel, S = stride
        let P = padding
        let arg = argmax!
        if layout == .blocked16 { return forwardBlocked(x, y, batch: batch) }
        for p in 0..<(batch * input.channels) {
            let xp = x + p * H * W, yp = y + p * OH * OW, ap = arg + p * OH * OW
            if K == 2 && S == 2 && P == 0 {
                for oh in 0..<OH {
                    let r0 = xp + 2 * oh * W, r1 = r0 + W
                    for ow in 0..<OW {
                        let j = 2 * ow
                        var best = r0[j], at = 2 * oh * W + j
                        if r0[j + 1] > best { best = r0[j + 1]; at = 2 * oh * W + j + 1 }
                        if r1[j] > best { best = r1[j]; at = (2 * oh + 1) * W + j }
                        if r1[j + 1] > best { best = r1[j + 1]; at = (2 * oh + 1) * W + j + 1 }
                        yp[oh * OW + ow] = best; ap[oh * OW + ow] = Int32(at)
                    }
                }
                continue
            }
            for oh in 0..<OH {
                // The window's rows and columns clipped to the input (2p ≤ k keeps it non-empty).
                let h0 = max(oh * S - P, 0), h1 = min(oh * S - P + K, H)
                for ow in 0..<OW {
                    let w0 = max(ow * S - P, 0), w1 = min(ow * S - P + K, W)
                    var best = -Float.infinity, at = h0 * W + w0
                    for ih in h0..<h1 {
                        for iw in w0..<w1 where xp[ih * W + iw] > best { best = xp[ih * W + iw]; at = ih * W + iw }
                    }
                    yp[oh * OW + ow] = best; ap[oh * OW + ow] = Int32(at)
                }
            }
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        guard let dx else { return }
        let inPlane = input.plane, outPlane = output.plane
        let arg = argmax!
        if layout == .blocked16 && tiles { return backwardTiled(dy, dx, batch: batch) }
        dx.update(repeating: 0, count: batch * input.count)
        if layout == .blocked16 {
            let B = ActivationLayout.block
            for p in 0..<(batch * input.channels / B) {
                let dxp = dx + p * inPlane * B, dyp = dy + p * outPlane * B, ap = arg + p * outPlane * B
                for o in 0..<(outPlane * B) { dxp[Int(ap[o]) * B + o % B] += dyp[o] }
            }
            return
        }
        for p in 0..<(batch * input.channels) {
            let dxp = dx + p * inPlane, dyp = dy + p * outPlane, ap = arg + p * outPlane
            for o in 0..<outPlane { dxp[Int(ap[o])] += dyp[o] }
        }
    }
}

/// Max pooling on the blocked layout: 16 channels per vector, argmax kept per channel as the
/// index within its plane (as in the planar layout).
extension MaxPool2d: LayoutNegotiating {
    public func negotiate(offered: ActivationLayout, allowBlocked: Bool) -> (input: ActivationLayout, output: ActivationLayout) {
        layout = offered
        return (offered, offered)
    }

    /// Whether the windows tile the input: every input position in exactly one window (window
    /// = stride, no padding, no leftover rows or columns), so backward can write dx in one pass.
    private var tiles: Bool {
        kernel == stride && padding == 0 && input.height == output.height * stride && input.width == output.width * stride
    }

    /// dx for tiling windows on the blocked layout, each element written once: dy where the
    /// window's maximum was, 0 elsewhere (no zeroing pass, no scattered adds).
    private func backwardTiled(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, batch: Int) {
        let B = ActivationLayout.block, W = input.width, OH = output.height, OW = output.width, K = kernel
        let arg = argmax!, zero = SIMD16<Float>(repeating: 0)
        for p in 0..<(batch * input.channels / B) {
            let dxp = dx + p * input.plane * B, dyp = dy + p * OH * OW * B, ap = arg + p * OH * OW * B
            for oh in 0..<OH {
                for ow in 0..<OW {
                    let o = (oh * OW + ow) * B
                    let g = Vec.load(dyp + o), at = UnsafeRawPointer(ap + o).loadUnaligned(as: SIMD16<Int32>.self)
                    for ih in oh * K..<(oh + 1) * K {
                        for iw in ow * K..<(ow + 1) * K {
                            let position = ih * W + iw
                            Vec.store(zero.replacing(with: g, where: at .== SIMD16(repeating: Int32(position))), dxp + position * B)
                        }
                    }
                }
            }
        }
    }

    private func forwardBlocked(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int) {
        let B = ActivationLayout.block, H = input.height, W = input.width, OH = output.height, OW = output.width
        let K = kernel, S = stride, P = padding, arg = argmax!
        for p in 0..<(batch * input.channels / B) {
            let xp = x + p * H * W * B, yp = y + p * OH * OW * B, ap = arg + p * OH * OW * B
            for oh in 0..<OH {
                let h0 = max(oh * S - P, 0), h1 = min(oh * S - P + K, H)
                for ow in 0..<OW {
                    let w0 = max(ow * S - P, 0), w1 = min(ow * S - P + K, W)
                    var best = SIMD16<Float>(repeating: -.infinity), at = SIMD16<Int32>(repeating: Int32(h0 * W + w0))
                    for ih in h0..<h1 {
                        for iw in w0..<w1 {
                            let v = Vec.load(xp + (ih * W + iw) * B), wins = v .> best
                            best.replace(with: v, where: wins)
                            at.replace(with: SIMD16<Int32>(repeating: Int32(ih * W + iw)), where: wins)
                        }
                    }
                    let o = (oh * OW + ow) * B
                    Vec.store(best, yp + o)
                    UnsafeMutableRawPointer(ap + o).storeBytes(of: at, as: SIMD16<Int32>.self)
                }
            }
        }
    }
}
