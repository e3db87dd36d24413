import Testing
import Shards

@Suite struct EpochPlanTests {
    @Test(arguments: [1, 2, 3, 4, 8])
    func rankSlicesPartitionEveryGlobalBatch(world: Int) {
        let plan = EpochPlan(sampleCount: 250, globalBatch: 64, seed: 7, epoch: 3)
        #expect(plan.steps == 4)
        #expect(plan.batchSize(step: 3) == 58)
        var seen: [Int] = []
        for step in 0..<plan.steps {
            var batch: [Int] = []
            for r in 0..<world { batch += plan.samples(step: step, rank: r, worldSize: world) }
            // The global batch is the same whatever the world size, in the same order.
            #expect(batch == Array(plan.order[(step * 64)..<(step * 64 + plan.batchSize(step: step))]))
            let sizes = (0..<world).map { plan.rankSlice(step: step, rank: $0, worldSize: world).count }
            #expect(sizes.max()! - sizes.min()! <= 1)
            seen += batch
        }
        #expect(seen.sorted() == Array(0..<250))   // every sample exactly once, nothing padded
    }

    @Test func orderDependsOnSeedAndEpochOnly() {
        let a = EpochPlan(sampleCount: 100, globalBatch: 10, seed: 1, epoch: 0)
        #expect(a.order == EpochPlan(sampleCount: 100, globalBatch: 10, seed: 1, epoch: 0).order)
        #expect(a.order != EpochPlan(sampleCount: 100, globalBatch: 10, seed: 1, epoch: 1).order)
        #expect(a.order != EpochPlan(sampleCount: 100, globalBatch: 10, seed: 2, epoch: 0).order)
        #expect(EpochPlan(sampleCount: 5, globalBatch: 2, seed: 1, epoch: 0, shuffle: false).order == [0, 1, 2, 3, 4])
    }

    @Test func moreRanksThanSamplesLeavesEmptySlicesButSameSteps() {
        let plan = EpochPlan(sampleCount: 3, globalBatch: 8, seed: 1, epoch: 0)
        #expect(plan.steps == 1)
        let sizes = (0..<4).map { plan.rankSlice(step: 0, rank: $0, worldSize: 4).count }
        #expect(sizes.reduce(0, +) == 3 && sizes.contains(0))
    }
}
