import Testing
import Shards

@Suite struct ShardedSamplerTests {
    let n = 1003, batch = 64, shards = 16

    func sampler(seed: UInt64 = 5) throws -> ShardedSampler {
        try ShardedSampler(sampleCount: n, globalBatch: batch, virtualShards: shards, seed: seed)
    }

    @Test(arguments: [1, 2, 4, 8])
    func ranksPartitionEveryEpochExactly(world: Int) throws {
        let s = try sampler()
        try s.validate(worldSize: world)
        for e in 0..<2 {
            let epoch = s.epoch(e)
            #expect(epoch.steps == 16)
            var seen: [Int] = []
            for step in 0..<epoch.steps {
                var stepSamples: [Int] = []
                for r in 0..<world { stepSamples += epoch.samples(step: step, rank: r, worldSize: world) }
                #expect(stepSamples.count == epoch.batchSize(step: step))
                seen += stepSamples
            }
            // The union over ranks and steps is the dataset, each sample once: nothing padded or dropped.
            #expect(seen.count == n)
            #expect(Set(seen).count == n)
            #expect(seen.sorted() == Array(0..<n))
        }
    }

    @Test func globalBatchIsTheSameWhateverTheWorldSize() throws {
        let s = try sampler()
        let epoch = s.epoch(3)
        for step in [0, 7, epoch.steps - 1] {
            let reference = epoch.globalBatch(step: step).sorted()
            for world in [1, 2, 4, 8] {
                let union = (0..<world).flatMap { epoch.samples(step: step, rank: $0, worldSize: world) }
                #expect(union.sorted() == reference, "world \(world) step \(step)")
            }
        }
        #expect(epoch.batchSize(step: epoch.steps - 1) == n - 15 * batch)   // the short last batch
    }

    @Test(arguments: [2, 4, 8])
    func aSampleStaysOnItsRankEveryEpoch(world: Int) throws {
        let s = try sampler()
        for r in 0..<world {
            let home = Set(s.workingSet(rank: r, worldSize: world))
            for e in 0..<3 {
                let epoch = s.epoch(e)
                let visited = (0..<epoch.steps).flatMap { epoch.samples(step: $0, rank: r, worldSize: world) }
                #expect(Set(visited) == home)
            }
        }
    }

    @Test func orderIsReshuffledEachEpochButDeterministic() throws {
        let a = try sampler(), b = try sampler()
        #expect(a.epoch(0).globalBatch(step: 0) == b.epoch(0).globalBatch(step: 0))
        #expect(a.epoch(0).globalBatch(step: 0) != a.epoch(1).globalBatch(step: 0))
        #expect(try sampler(seed: 6).epoch(0).globalBatch(step: 0) != a.epoch(0).globalBatch(step: 0))
    }

    /// Resume state is (seed, V, epoch, step): a fresh sampler resumed at (epoch 2, step 17)
    /// produces exactly the rest of the original sequence, even with another world size.
    @Test func resumeReproducesTheRemainingSequence() throws {
        let big = try ShardedSampler(sampleCount: 5000, globalBatch: 128, virtualShards: 32, seed: 9)
        var original: [[Int]] = []
        for e in 2..<4 {
            let epoch = big.epoch(e)
            for step in (e == 2 ? 17 : 0)..<epoch.steps { original.append(epoch.globalBatch(step: step)) }
        }
        let resumed = try ShardedSampler(sampleCount: 5000, globalBatch: 128, virtualShards: 32, seed: 9)
        var again: [[Int]] = []
        for e in 2..<4 {
            let epoch = resumed.epoch(e)
            for step in (e == 2 ? 17 : 0)..<epoch.steps {
                // Relaunched on 4 ranks instead of 1: the union of the rank slices, in position order.
                let parts = (0..<4).map { epoch.samples(step: step, rank: $0, worldSize: 4) }
                #expect(parts.joined().sorted() == epoch.globalBatch(step: step).sorted())
                again.append(epoch.globalBatch(step: step))
            }
        }
        #expect(again == original)
        #expect(original.count == (40 - 17) + 40)
    }

    @Test func ranksGetEqualSlicesWhenShardsDivideTheBatch() throws {
        let s = try ShardedSampler(sampleCount: 4096, globalBatch: 128, virtualShards: 32, seed: 1)
        let epoch = s.epoch(0)
        for step in 0..<epoch.steps {
            for r in 0..<4 { #expect(epoch.samples(step: step, rank: r, worldSize: 4).count == 32) }
        }
    }

    @Test func worldSizeMustDivideTheShards() throws {
        let s = try sampler()
        #expect(throws: SamplerError.self) { try s.validate(worldSize: 3) }
        #expect(ShardedSampler.defaultShards(globalBatch: 128, worldSize: 6) == 60)
        #expect(ShardedSampler.defaultShards(globalBatch: 128, worldSize: 1) == 64)
        #expect(ShardedSampler.defaultShards(globalBatch: 8, worldSize: 16) == 16)
    }

    @Test func moreShardsThanSamplesStillCoversEverything() throws {
        let s = try ShardedSampler(sampleCount: 5, globalBatch: 4, virtualShards: 8, seed: 2)
        let epoch = s.epoch(0)
        #expect(epoch.steps == 2)
        let all = (0..<2).flatMap { step in (0..<8).flatMap { epoch.samples(step: step, rank: $0, worldSize: 8) } }
        #expect(all.sorted() == [0, 1, 2, 3, 4])
    }
}
