import Testing
import Model
@testable import Training

@Suite struct RunControlStateTests {
    @Test func lossesAreMinimisedAccuraciesMaximised() {
        #expect(!RunControlOptions.higherIsBetter("val_loss") && !RunControlOptions.higherIsBetter("train_loss"))
        #expect(!RunControlOptions.higherIsBetter("val_loss_ema"))
        #expect(RunControlOptions.higherIsBetter("val_acc") && RunControlOptions.higherIsBetter("val_macro_f1"))
    }

    @Test func bestKRankingAndPatience() {
        var o = RunControlOptions()
        o.keepBest = 2; o.earlyStopPatience = 2; o.earlyStopMinDelta = 0.05
        var s = RunControlState(monitor: "val_loss")
        var u = s.record(epoch: 1, value: 1.0, options: o)
        #expect(u.isBest && u.keep == "best-epoch001.ckpt" && u.dropped.isEmpty)
        u = s.record(epoch: 2, value: 0.8, options: o)                       // better by 0.2
        #expect(u.isBest && u.keep == "best-epoch002.ckpt" && u.dropped.isEmpty && s.badEpochs == 0)
        u = s.record(epoch: 3, value: 0.9, options: o)                       // second best: epoch 1 leaves
        #expect(!u.isBest && u.keep == "best-epoch003.ckpt" && u.dropped == ["best-epoch001.ckpt"] && s.badEpochs == 1)
        #expect(s.ranked.map(\.epoch) == [2, 3])
        u = s.record(epoch: 4, value: 0.78, options: o)                      // best, but by less than min delta
        #expect(u.isBest && s.bestEpoch == 4 && u.dropped == ["best-epoch003.ckpt"] && s.badEpochs == 2 && s.stopped)
        #expect(s.ranked.map(\.epoch) == [4, 2])
        var t = RunControlState(monitor: "val_acc")                          // higher is better; worse ones never kept
        o.keepBest = 1; o.earlyStopPatience = nil
        #expect(t.record(epoch: 1, value: 0.5, options: o).isBest)
        let w = t.record(epoch: 2, value: 0.4, options: o)
        #expect(!w.isBest && w.keep == nil && w.dropped.isEmpty && !t.stopped && t.badEpochs == 1)
    }

    @Test func badOptionsAreRejected() {
        var o = RunControlOptions()
        o.accumSteps = 0
        #expect(throws: TrainingError.self) { try o.validate() }
        o = RunControlOptions(); o.emaDecay = 1
        #expect(throws: TrainingError.self) { try o.validate() }
        o = RunControlOptions(); o.monitor = "val_macro_f1"
        #expect(throws: TrainingError.self) { try o.resolvedMonitor(hasValidation: false) }
        #expect((try? o.resolvedMonitor(hasValidation: true)) == "val_macro_f1")
        o.monitor = "val_acc_ema"
        #expect(throws: TrainingError.self) { try o.resolvedMonitor(hasValidation: true) }   // needs --ema-decay
    }
}
