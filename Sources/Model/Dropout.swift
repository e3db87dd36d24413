import Support

/// Inverted dropout: in `.train` mode each element is zeroed with probability p and the rest
/// scaled by 1/(1 − p); identity in `.eval` mode.
///
/// The mask of a sample is drawn from (seed, step, sample id, layer salt), so it is the same
/// however the global batch is split across ranks.
public final class Dropout: Layer {
    public let kind = "dropout"
    public let p: Float
    let salt: UInt64
    private var count = 0
    /// [batch, count] scale factors of the last training forward (0 or 1/(1 − p)).
    private var mask: UnsafeMutablePointer<Float>?
    private var lastMode = Mode.eval

    public init(p: Float, salt: UInt64 = 0) { self.p = p; self.salt = salt }
    deinit { mask?.deallocate() }

    public func configure(input: FeatureShape) throws -> FeatureShape {
        guard p >= 0, p < 1 else { throw ModelError.invalidOption("dropout probability must be in [0, 1), got \(p)") }
        count = input.count
        return input
    }

    public func prepare(maxBatch: Int) {
        mask?.deallocate()
        mask = .allocate(capacity: max(1, maxBatch * count))
        mask!.initialize(repeating: 1, count: max(1, maxBatch * count))
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        lastMode = mode
        guard mode == .train, p > 0 else { y.update(from: x, count: batch * count); return }
        let keep = 1 / (1 - p)
        for n in 0..<batch {
            let global = UInt64(context.sampleIDs.map { $0[n] } ?? n)
            var rng = RandomSource(seed: context.seed ^ (salt &* 0xD6E8_FEB8_6659_FD93),
                                   stream: (UInt64(context.step) << 32) ^ global)
            let m = mask! + n * count
            for i in 0..<count {
                m[i] = rng.nextFloat() < p ? 0 : keep
                y[n * count + i] = x[n * count + i] * m[i]
            }
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        guard let dx else { return }
        guard lastMode == .train, p > 0 else { dx.update(from: dy, count: batch * count); return }
        for i in 0..<(batch * count) { dx[i] = dy[i] * mask![i] }
    }
}
