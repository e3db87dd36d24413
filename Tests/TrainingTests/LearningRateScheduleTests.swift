import Testing
import Foundation
import Training
import Model

@Suite struct LearningRateScheduleTests {
    @Test func constantNeverChanges() {
        let s = LearningRateSchedule(kind: .constant, baseLR: 0.1, totalSteps: 10)
        #expect((0...20).allSatisfy { s.rate(atStep: $0) == 0.1 })
    }

    @Test func cosineByHand() {
        let s = LearningRateSchedule(kind: .cosine, baseLR: 0.1, totalSteps: 4, floor: 0.02)
        // floor + (base − floor)·(1 + cos(π t/4))/2 for t = 0…4
        let expected: [Float] = [0.1, 0.02 + 0.08 * Float((1 + cos(Double.pi / 4)) / 2), 0.06,
                                 0.02 + 0.08 * Float((1 + cos(3 * Double.pi / 4)) / 2), 0.02]
        for t in 0...4 { #expect(abs(s.rate(atStep: t) - expected[t]) < 1e-7) }
        #expect(s.rate(atStep: 9) == 0.02)   // stays at the floor past the end
    }
}

@Suite struct RecipeScheduleTests {
    func rates(_ s: LearningRateSchedule, _ steps: ClosedRange<Int>) -> [Float] { steps.map { s.rate(atStep: $0) } }
    func close(_ a: [Float], _ b: [Float]) -> Bool { a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) < 1e-7 } }

    @Test func stepByEpochs() {
        var s = LearningRateSchedule(kind: .step, baseLR: 0.1, totalSteps: 10, stepsPerEpoch: 2)
        s.stepSize = 2; s.gamma = 0.5
        // steps 0…8 are epochs 0,0,1,1,2,2,3,3,4: ×0.5 at epochs 2 and 4.
        #expect(close(rates(s, 0...8), [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025]))
    }

    @Test func multistepAtMilestones() {
        var s = LearningRateSchedule(kind: .multistep, baseLR: 0.1, totalSteps: 5, stepsPerEpoch: 1)
        s.milestones = [1, 3]; s.gamma = 0.1
        #expect(close(rates(s, 0...4), [0.1, 0.01, 0.01, 0.001, 0.001]))
    }

    @Test func warmupThenCosine() {
        var s = LearningRateSchedule(kind: .cosine, baseLR: 0.1, totalSteps: 8, stepsPerEpoch: 2)
        s.warmupSteps = 4
        // (s+1)/4 · 0.1 for s < 4, then the cosine over the remaining 4 steps.
        let c = { (t: Double) in Float(0.1 * (1 + cos(Double.pi * t)) / 2) }
        #expect(close(rates(s, 0...9), [0.025, 0.05, 0.075, 0.1, 0.1, c(0.25), c(0.5), c(0.75), 0, 0]))
    }

    @Test func warmupBeforeStepAndConstant() {
        var s = LearningRateSchedule(kind: .step, baseLR: 0.2, totalSteps: 10, stepsPerEpoch: 1)
        s.warmupSteps = 2; s.stepSize = 3; s.gamma = 0.5
        #expect(close(rates(s, 0...4), [0.1, 0.2, 0.2, 0.1, 0.1]))
        var k = LearningRateSchedule(kind: .constant, baseLR: 0.3, totalSteps: 10)
        k.warmupSteps = 3
        #expect(close(rates(k, 0...4), [0.1, 0.2, 0.3, 0.3, 0.3]))
    }

    /// torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min", factor=0.5, patience=1,
    /// threshold=0.1, cooldown=1, min_lr=0.02) on the same metrics (scripts/torch_recipe_reference.py).
    @Test func plateauMatchesTorch() throws {
        var s = LearningRateSchedule(kind: .plateau, baseLR: 0.1, totalSteps: 100, stepsPerEpoch: 10)
        s.plateau.factor = 0.5; s.plateau.patience = 1; s.plateau.threshold = 0.1; s.plateau.cooldown = 1; s.plateau.minLR = 0.02
        var lrs: [Float] = [], reduced: [Bool] = []
        for m in [1.0, 0.95, 0.95, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6] {
            reduced.append(s.epochEnded(metric: m))
            lrs.append(s.rate(atStep: 55))
        }
        #expect(close(lrs, [0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02, 0.02, 0.02, 0.02]))
        #expect(reduced.enumerated().filter(\.element).map(\.offset) == [2, 5, 8])
        // The state survives JSON (a checkpoint header) and the rank-0 broadcast vector.
        let copy = try JSONDecoder().decode(LearningRateSchedule.self, from: JSONEncoder().encode(s))
        #expect(copy == s)
        var fresh = LearningRateSchedule(kind: .plateau, baseLR: 0.1, totalSteps: 100, stepsPerEpoch: 10)
        fresh.plateau = s.plateau
        fresh.plateau.lr = nil; fresh.plateau.best = nil; fresh.plateau.badEpochs = 0
        fresh.setState(s.stateVector)
        #expect(fresh == s)
    }

    @Test func plateauMaxModeWithWarmup() {
        var s = LearningRateSchedule(kind: .plateau, baseLR: 0.4, totalSteps: 100, stepsPerEpoch: 10)
        s.plateau.mode = .max; s.plateau.patience = 0; s.plateau.threshold = 0; s.plateau.factor = 0.5
        s.warmupSteps = 4
        #expect(s.rate(atStep: 0) == 0.1)
        s.epochEnded(metric: 0.5)          // first value: improvement
        s.epochEnded(metric: 0.6)          // better accuracy
        #expect(s.rate(atStep: 20) == 0.4)
        let reduced = s.epochEnded(metric: 0.6)
        #expect(reduced)                   // not better: 1 bad epoch > patience 0
        #expect(s.rate(atStep: 30) == 0.2 && s.rate(atStep: 1) == 0.1)   // warm-up ramps to the current rate
        let ignored = s.epochEnded(metric: .nan)
        #expect(!ignored && s.rate(atStep: 40) == 0.2)
    }
}
