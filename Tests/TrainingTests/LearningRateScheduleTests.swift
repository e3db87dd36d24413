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
