/// Max pooling with a square window, no padding (PyTorch `MaxPool2d(k, stride)`, floor mode).
///
/// x: [batch, C, H, W] → y: [batch, C, (H − k)/s + 1, (W − k)/s + 1]. Forward records the
/// position of each maximum (first one on ties) so backward routes the gradient there.
public final class MaxPool2d: Layer {
    public let kind = "maxpool2d"
    public let kernel: Int, stride: Int
    private var input = FeatureShape(features: 0), output = FeatureShape(features: 0)
    /// [batch, C, OH, OW] index of the max within its input plane.
    private var argmax: UnsafeMutablePointer<Int32>?

    public init(kernel: Int = 2, stride: Int? = nil) { self.kernel = kernel; self.stride = stride ?? kernel }
    deinit { argmax?.deallocate() }

    public func configure(input: FeatureShape) throws -> FeatureShape {
        guard input.height >= kernel, input.width >= kernel else {
            throw ModelError.invalidShape(layer: kind, input: input, reason: "window \(kernel) larger than the input")
        }
        self.input = input
        output = FeatureShape(channels: input.channels, height: (input.height - kernel) / stride + 1,
                              width: (input.width - kernel) / stride + 1)
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
        let arg = argmax!
        for p in 0..<(batch * input.channels) {
            let xp = x + p * H * W, yp = y + p * OH * OW, ap = arg + p * OH * OW
            if K == 2 && S == 2 {
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
                for ow in 0..<OW {
                    var best = -Float.infinity, at = (oh * S) * W + ow * S
                    for ki in 0..<K {
                        let row = (oh * S + ki) * W + ow * S
                        for kj in 0..<K where xp[row + kj] > best { best = xp[row + kj]; at = row + kj }
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
        dx.update(repeating: 0, count: batch * input.count)
        let arg = argmax!
        for p in 0..<(batch * input.channels) {
            let dxp = dx + p * inPlane, dyp = dy + p * outPlane, ap = arg + p * outPlane
            for o in 0..<outPlane { dxp[Int(ap[o])] += dyp[o] }
        }
    }
}
