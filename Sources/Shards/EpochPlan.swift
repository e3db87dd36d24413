import Support

/// The deterministic order of one epoch and its split into global batches and per-rank slices.
///
/// Every rank builds the same plan from (sample count, global batch, seed, epoch), so no
/// coordination is needed: global batch k is `order[k·B ..< (k+1)·B]` (the last one may be
/// shorter; nothing is padded or duplicated), and rank r of W takes the contiguous slice
/// `[⌊r·b/W⌋, ⌊(r+1)·b/W⌋)` of a batch of b samples. Every rank runs the same number of steps,
/// even when its slice of a short last batch is empty.
public struct EpochPlan: Sendable {
    public let sampleCount: Int
    public let globalBatch: Int
    public let epoch: Int
    /// A permutation of 0..<sampleCount (identity when not shuffled).
    public let order: [Int]

    public init(sampleCount: Int, globalBatch: Int, seed: UInt64, epoch: Int, shuffle: Bool = true) {
        precondition(globalBatch > 0)
        self.sampleCount = sampleCount
        self.globalBatch = globalBatch
        self.epoch = epoch
        if shuffle {
            var rng = RandomSource(seed: seed, stream: 0xE90C_0000 &+ UInt64(epoch))
            order = rng.permutation(sampleCount)
        } else {
            order = Array(0..<sampleCount)
        }
    }

    /// Optimizer steps in the epoch (the last batch may be partial).
    public var steps: Int { (sampleCount + globalBatch - 1) / globalBatch }

    /// Number of samples in global batch `step`.
    public func batchSize(step: Int) -> Int { min(globalBatch, sampleCount - step * globalBatch) }

    /// Positions within global batch `step` that belong to `rank` of `worldSize`.
    public func rankSlice(step: Int, rank: Int, worldSize: Int) -> Range<Int> {
        Self.split(batchSize(step: step), part: rank, of: worldSize)
    }

    /// Sample indices `rank` processes at `step`.
    public func samples(step: Int, rank: Int, worldSize: Int) -> ArraySlice<Int> {
        let start = step * globalBatch
        let slice = rankSlice(step: step, rank: rank, worldSize: worldSize)
        return order[(start + slice.lowerBound)..<(start + slice.upperBound)]
    }

    /// The contiguous part `part` of `parts` of `count` items: sizes differ by at most one.
    public static func split(_ count: Int, part: Int, of parts: Int) -> Range<Int> {
        (part * count / parts)..<((part + 1) * count / parts)
    }
}
