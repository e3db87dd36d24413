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

    /// The same six samples with probabilities (3 classes); by hand, following scikit-learn's
    /// `top_k_accuracy_score` and the 15-bin ECE of Guo et al. (bins (b/15, (b+1)/15]):
    ///   confidences .7 .5 .62 .85 .5 .9 → bins 10, 7, 9, 12, 7, 13; correct ✓ ✓ ✗ ✓ ✗ ✓
    ///   ECE = (|1 − 1.0| + |0 − .62| + |1 − .7| + |1 − .85| + |1 − .9|) / 6 = 1.17 / 6 = 0.195
    ///   true-class ranks 0 0 1 0 1 0 → top1 4/6, top2 6/6, top3 (and top5, capped) 1.
    static let samples: [(label: Int, p: [Float])] = [
        (0, [0.7, 0.2, 0.1]), (0, [0.5, 0.3, 0.2]), (0, [0.3, 0.62, 0.08]),
        (1, [0.1, 0.85, 0.05]), (1, [0.2, 0.3, 0.5]), (2, [0.05, 0.05, 0.9]),
    ]

    static func counts(_ samples: [(label: Int, p: [Float])]) -> EvaluationCounts {
        var c = EvaluationCounts(classes: samples[0].p.count)
        for s in samples { c.add(probabilities: s.p, label: s.label) }
        return c
    }

    @Test func topKAndCalibrationByHand() {
        let c = Self.counts(Self.samples)
        #expect(c.confusionRows == [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
        #expect(c.trueClassRanks == [4, 2, 0])
        let m = c.metrics
        #expect(m.topK(1) == 4.0 / 6 && m.topK(1) == m.accuracy)
        #expect(m.topK(2) == 1 && m.topK(3) == 1 && m.topK(5) == 1)
        #expect(c.calibration.count[7] == 2 && c.calibration.correct[7] == 1)
        #expect([9, 10, 12, 13].allSatisfy { c.calibration.count[$0] == 1 })
        #expect(c.calibration.count.reduce(0, +) == 6)
        #expect(abs(m.ece! - 0.195) < 1e-6)
        let s = m.summary
        #expect(s["top5"] == 1 && s["top3"] == 1 && abs(s["top1"]! - 4.0 / 6) < 1e-15)
        #expect(abs(s["ece"]! - 0.195) < 1e-6)
    }

    @Test func binBoundaries() {
        #expect(CalibrationBins.bin(of: 0, bins: 15) == 0)
        #expect(CalibrationBins.bin(of: 0.5, bins: 15) == 7)
        #expect(CalibrationBins.bin(of: 1, bins: 15) == 14)
        #expect(CalibrationBins.bin(of: 0.9999, bins: 15) == 14)
        #expect(CalibrationBins.bin(of: 0.0001, bins: 15) == 0)
        // A perfectly calibrated set: 4 samples at confidence 0.75 with 3 correct → ECE 0.
        var c = EvaluationCounts(classes: 4)
        for label in [0, 0, 0, 1] { c.add(probabilities: [0.75, 0.125, 0.0625, 0.0625], label: label) }
        #expect(c.metrics.ece == 0)
    }

    /// Ties: the prediction is the first most probable class, and the true class ranks behind
    /// equally probable classes with lower indices, so top-1 always equals accuracy.
    @Test func tiesFollowTheArgMax() {
        var c = EvaluationCounts(classes: 3)
        #expect(c.add(probabilities: [0.4, 0.4, 0.2], label: 1) == 0)
        #expect(c.add(probabilities: [0.4, 0.4, 0.2], label: 0) == 0)
        #expect(c.trueClassRanks == [1, 1, 0])
        #expect(c.metrics.topK(1) == c.metrics.accuracy)
    }

    /// Counts split in any way and summed give the counts of the whole (what the allreduce relies on).
    @Test func countsAreAdditive() throws {
        var rng = SystemRandomNumberGenerator()
        var all: [(label: Int, p: [Float])] = []
        for _ in 0..<200 {
            var p = (0..<7).map { _ in Float.random(in: 0.01...1, using: &rng) }
            let sum = p.reduce(0, +); p = p.map { $0 / sum }
            all.append((Int.random(in: 0..<7, using: &rng), p))
        }
        let whole = Self.counts(all)
        let parts = [all[0..<66], all[66..<133], all[133...]].map { Self.counts(Array($0)) }
        var summed = EvaluationCounts(classes: 7)
        for p in parts {
            for i in summed.confusion.indices { summed.confusion[i] += p.confusion[i] }
            for i in summed.trueClassRanks.indices { summed.trueClassRanks[i] += p.trueClassRanks[i] }
            for b in 0..<15 {
                summed.calibration.count[b] += p.calibration.count[b]; summed.calibration.correct[b] += p.calibration.correct[b]
                summed.calibration.confidenceSum[b] += p.calibration.confidenceSum[b]
            }
        }
        #expect(summed == whole)
        #expect(summed.metrics.ece == whole.metrics.ece)
    }

    /// scikit-learn's classification_report layout: header, one row per class, accuracy, averages.
    @Test func reportLaysOutLikeScikitLearn() {
        let m = ClassificationMetrics(confusion: [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
        let lines = m.report(names: ["cat", "dog", "bird"], digits: 2).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[0] == "              precision    recall  f1-score   support")
        #expect(lines[2] == "         cat       1.00      0.67      0.80         3")
        #expect(lines[6] == "    accuracy                           0.67         6")
        #expect(lines[7] == "   macro avg       0.67      0.72      0.66         6")
        #expect(lines[8] == "weighted avg       0.75      0.67      0.68         6")
    }
}
