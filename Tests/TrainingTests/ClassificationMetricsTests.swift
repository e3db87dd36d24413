import Testing
import Training

@Suite struct ClassificationMetricsTests {
    /// y_true = [0,0,0,1,1,2], y_pred = [0,0,1,1,2,2]; scikit-learn gives
    /// accuracy 4/6, precision [1, .5, .5], recall [2/3, .5, 1], f1 [.8, .5, 2/3],
    /// macro F1 0.65556, weighted F1 0.68333, balanced accuracy 0.72222.
    @Test func matchesScikitLearnByHand() {
        let m = ClassificationMetrics(confusion: [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
        #expect(m.count == 6)
        #expect(abs(m.accuracy - 4.0 / 6) < 1e-12)
        #expect(zip(m.precision, [1, 0.5, 0.5]).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(zip(m.recall, [2.0 / 3, 0.5, 1]).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(abs(m.macroF1 - (0.8 + 0.5 + 2.0 / 3) / 3) < 1e-12)
        #expect(abs(m.weightedF1 - (0.8 * 3 + 0.5 * 2 + 2.0 / 3) / 6) < 1e-12)
        #expect(abs(m.balancedAccuracy - (2.0 / 3 + 0.5 + 1) / 3) < 1e-12)
    }

    @Test func classesWithoutSamplesDoNotCountInBalancedAccuracy() {
        // class 2 never occurs nor is predicted: excluded from both averages (as scikit-learn does).
        let m = ClassificationMetrics(confusion: [[3, 1, 0], [0, 2, 0], [0, 0, 0]])
        #expect(abs(m.balancedAccuracy - (0.75 + 1) / 2) < 1e-12)
        #expect(abs(m.macroF1 - (m.f1[0] + m.f1[1]) / 2) < 1e-12)
    }
}
