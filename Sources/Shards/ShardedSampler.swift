import Support

/// Deterministic assignment of samples to ranks through fixed **virtual shards**, and the order
/// in which they are visited, epoch after epoch.
///
/// - Samples are dealt into `virtualShards` (V) shards once for the run, from the seed alone:
///   a seeded permutation π, member j of shard s is π[s + j·V] (shard sizes differ by at most one).
/// - Shards map to ranks in contiguous blocks of V/W (the world size W must divide V), so a
///   sample stays on the same rank every epoch and a rank's cache holds its own working set.
/// - Each epoch reshuffles every shard's members (seed, epoch, shard) and interleaves the shards
///   round-robin into one epoch sequence of N positions; global batch k is positions
///   [k·B, (k+1)·B). The global batch at step k is therefore the same whatever W; each rank takes
///   the samples of that batch that live in its shards (about B/W of them when B ≥ V).
/// - The last batch of an epoch may be short. Nothing is padded or duplicated; every rank runs
///   the same number of steps, even with an empty slice.
///
/// The whole state of the data order is (seed, V, epoch, step): a run resumed at any step, with
/// any world size that divides V, continues with exactly the samples it would have seen.
public struct ShardedSampler: Sendable {
    public let sampleCount: Int
    public let globalBatch: Int
    public let virtualShards: Int
    public let seed: UInt64
    /// Members of each shard, in dealing order.
    let members: [[Int]]

    public init(sampleCount: Int, globalBatch: Int, virtualShards: Int, seed: UInt64) throws {
        guard globalBatch >= 1 else { throw SamplerError("the global batch must be at least 1") }
        guard virtualShards >= 1 else { throw SamplerError("--virtual-shards must be at least 1") }
        self.sampleCount = sampleCount
        self.globalBatch = globalBatch
        self.virtualShards = virtualShards
        self.seed = seed
        var rng = RandomSource(seed: seed, stream: 0x5AAD_0000)
        let pi = rng.permutation(sampleCount)
        var members = [[Int]](repeating: [], count: virtualShards)
        for (j, sample) in pi.enumerated() { members[j % virtualShards].append(sample) }
        self.members = members
    }

    /// The default number of virtual shards for a fresh run: the largest multiple of the world
    /// size not above min(global batch, 64), so every shard contributes to every step.
    public static func defaultShards(globalBatch: Int, worldSize: Int) -> Int {
        max(worldSize, min(globalBatch, 64) / worldSize * worldSize)
    }

    /// Checks that `worldSize` ranks can share the shards evenly.
    public func validate(worldSize: Int) throws {
        guard virtualShards % worldSize == 0 else {
            let lower = virtualShards / worldSize * worldSize, upper = lower + worldSize
            throw SamplerError("the world size \(worldSize) does not divide --virtual-shards \(virtualShards): "
                               + "use a multiple of \(worldSize)" + (lower > 0 ? " such as \(lower) or \(upper)" : " such as \(upper)")
                               + " (a run resumed from a checkpoint keeps its V: launch a world size that divides it)")
        }
    }

    /// Optimizer steps per epoch.
    public var stepsPerEpoch: Int { (sampleCount + globalBatch - 1) / globalBatch }

    /// Shards owned by `rank` of `worldSize`.
    public func shards(rank: Int, worldSize: Int) -> Range<Int> {
        let per = virtualShards / worldSize
        return (rank * per)..<((rank + 1) * per)
    }

    /// Every sample `rank` ever sees (its working set), sorted.
    public func workingSet(rank: Int, worldSize: Int) -> [Int] {
        shards(rank: rank, worldSize: worldSize).flatMap { members[$0] }.sorted()
    }

    /// The visiting order of `epoch`.
    public func epoch(_ epoch: Int) -> Epoch { Epoch(sampler: self, epoch: epoch) }

    /// One epoch's order: positions 0..<N, each naming a (shard, sample).
    public struct Epoch: Sendable {
        public let epoch: Int
        let globalBatch: Int
        let virtualShards: Int
        /// Shuffled members of each shard for this epoch.
        let order: [[Int]]
        let fullRounds: Int

        init(sampler: ShardedSampler, epoch: Int) {
            self.epoch = epoch
            globalBatch = sampler.globalBatch
            virtualShards = sampler.virtualShards
            order = sampler.members.enumerated().map { s, m in
                var rng = RandomSource(seed: sampler.seed, stream: (UInt64(epoch) << 24) ^ UInt64(s) ^ 0xE90C_0000_0000)
                return rng.permutation(m.count).map { m[$0] }
            }
            fullRounds = sampler.sampleCount / max(virtualShards, 1)
        }

        public var sampleCount: Int { order.reduce(0) { $0 + $1.count } }
        public var steps: Int { (sampleCount + globalBatch - 1) / globalBatch }

        /// (shard, sample) at epoch position `p`: round-robin over all shards for the first
        /// ⌊N/V⌋ rounds, then over the shards that hold one more member.
        @inline(__always) func entry(at p: Int) -> (shard: Int, sample: Int) {
            let full = fullRounds * virtualShards
            if p < full { let s = p % virtualShards; return (s, order[s][p / virtualShards]) }
            let s = p - full
            return (s, order[s][fullRounds])
        }

        /// Positions of global batch `step`.
        public func positions(step: Int) -> Range<Int> {
            (step * globalBatch)..<min((step + 1) * globalBatch, sampleCount)
        }

        /// Number of samples in global batch `step` (all ranks together).
        public func batchSize(step: Int) -> Int { positions(step: step).count }

        /// The whole global batch `step`, in position order.
        public func globalBatch(step: Int) -> [Int] { positions(step: step).map { entry(at: $0).sample } }

        /// The samples of global batch `step` that `rank` processes, in position order.
        public func samples(step: Int, rank: Int, worldSize: Int) -> [Int] {
            let per = virtualShards / worldSize
            let mine = (rank * per)..<((rank + 1) * per)
            var out: [Int] = []
            out.reserveCapacity(globalBatch / worldSize + per)
            for p in positions(step: step) {
                let e = entry(at: p)
                if mine.contains(e.shard) { out.append(e.sample) }
            }
            return out
        }
    }
}

/// A sampler configuration that cannot work, with what to do instead.
public struct SamplerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
