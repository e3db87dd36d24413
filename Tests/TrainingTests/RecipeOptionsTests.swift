import Testing
import Foundation
import Model
import Shards
@testable import Training
import TestSupport

/// The factories that turn options into the loss, optimizer and schedule.
@Suite struct RecipeOptionsTests {
    func options(_ edit: (inout TrainOptions) -> Void) -> TrainOptions {
        var o = TrainOptions(trainManifest: "t.jsonl", valManifest: nil, outDir: "out")
        edit(&o)
        return o
    }
    let classes = ["a", "b", "c"]

    @Test func lossesFromOptions() throws {
        let ce = try #require(try options { $0.labelSmoothing = 0.1 }.makeLoss(classes: classes, counts: [10, 30, 60]) as? CrossEntropyLoss)
        #expect(ce.classWeights == nil && ce.labelSmoothing == 0.1)
        // auto: scikit-learn's balanced weights n / (K · count).
        let w = try #require(try options { $0.loss = .weightedCE }.makeLoss(classes: classes, counts: [10, 30, 60]) as? CrossEntropyLoss)
        let expected: [Float] = [100 / 30, 100 / 90, 100 / 180]
        let weights = try #require(w.classWeights)
        #expect(zip(weights, expected).allSatisfy { abs($0 - $1) < 1e-5 })
        let f = try #require(try options { $0.loss = .focal; $0.focalGamma = 1.5; $0.focalAlpha = [0.25] }.makeLoss(classes: classes, counts: [1, 1, 1]) as? FocalLoss)
        #expect(f.gamma == 1.5 && f.alpha == [0.25, 0.25, 0.25])
    }

    @Test func badLossOptionsAreClearErrors() {
        func message(_ edit: (inout TrainOptions) -> Void) -> String {
            do { _ = try options(edit).makeLoss(classes: classes, counts: [1, 2, 3]); return "" } catch { return "\(error)" }
        }
        #expect(message { $0.loss = .focal; $0.focalAlpha = [1, 2] }.contains("--focal-alpha has 2 values"))
        #expect(message { $0.loss = .focal; $0.labelSmoothing = 0.1 }.contains("--label-smoothing"))
        #expect(message { $0.classWeights = "effective" }.contains("--class-weights applies to --loss weighted-ce"))
        #expect(message { $0.labelSmoothing = 1 }.contains("[0, 1)"))
        #expect(message { $0.loss = .weightedCE; $0.classWeights = "/nonexistent/w.json" }.contains("/nonexistent/w.json"))
    }

    @Test func classWeightsFiles() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let byName = dir.appendingPathComponent("w.json").path
        try Data(#"{"a": 1, "b": 4.5, "c": 0.5}"#.utf8).write(to: URL(fileURLWithPath: byName))
        let o = options { $0.loss = .weightedCE; $0.classWeights = byName }
        #expect((try o.makeLoss(classes: classes, counts: [1, 1, 1]) as? CrossEntropyLoss)?.classWeights == [1, 4.5, 0.5])
        // A class_weights.json as split and the trainer write it: its balanced weights.
        let run = dir.appendingPathComponent("class_weights.json").path
        try ClassWeights(classes: classes, counts: [10, 30, 60]).save(to: run)
        let fromRun = try #require(try options { $0.loss = .weightedCE; $0.classWeights = run }.makeLoss(classes: classes, counts: [1, 1, 1]) as? CrossEntropyLoss)
        #expect(abs(fromRun.classWeights![0] - 10 / 3) < 1e-6)
        #expect(throws: TrainingError.self) { try options { $0.loss = .weightedCE; $0.classWeights = run }.makeLoss(classes: ["a", "b", "x"], counts: [1, 1, 1]) }
        let missing = dir.appendingPathComponent("m.json").path
        try Data(#"{"a": 1, "b": 2}"#.utf8).write(to: URL(fileURLWithPath: missing))
        do { _ = try options { $0.loss = .weightedCE; $0.classWeights = missing }.makeLoss(classes: classes, counts: [1, 1, 1]); Issue.record("accepted") }
        catch { #expect("\(error)".contains(missing) && "\(error)".contains("no weight for class \"c\"")) }
    }

    @Test func optimizersAndLearningRate() {
        #expect(options { $0.optimizer = .adamw }.makeOptimizer().name == "adamw")
        #expect(options { $0.optimizer = .adam }.makeOptimizer().name == "adam")
        #expect(options { _ in }.makeOptimizer().name == "sgd")
        // --lr-base 0.1 per 256 images at a global batch of 64: 0.025.
        #expect(options { $0.lrBase = 0.1; $0.batchSize = 64 }.baseLearningRate == 0.025)
        #expect(options { $0.lr = 0.3 }.baseLearningRate == 0.3)
    }

    @Test func schedulesFromOptions() throws {
        let s = try options { $0.schedule = .cosine; $0.warmupEpochs = 0.5; $0.lrBase = 0.2; $0.batchSize = 128 }
            .makeSchedule(stepsPerEpoch: 10, totalSteps: 100, hasValidation: false)
        #expect(s.warmupSteps == 5 && s.baseLR == 0.1 && s.rate(atStep: 0) == 0.02)
        let p = try options { $0.schedule = .plateau; $0.plateauMetric = "val_acc"; $0.gamma = 0.5 }
            .makeSchedule(stepsPerEpoch: 10, totalSteps: 100, hasValidation: true)
        #expect(p.plateau.mode == .max && p.plateau.factor == 0.5)
        #expect(options { _ in }.plateauMonitor(hasValidation: true) == "val_loss")
        #expect(throws: TrainingError.self) { try options { $0.schedule = .plateau; $0.plateauMetric = "val_loss" }.makeSchedule(stepsPerEpoch: 1, totalSteps: 1, hasValidation: false) }
        #expect(throws: TrainingError.self) { try options { $0.schedule = .multistep }.makeSchedule(stepsPerEpoch: 1, totalSteps: 1, hasValidation: false) }
        #expect(throws: TrainingError.self) { try options { $0.warmupEpochs = 1; $0.warmupSteps = 3 }.makeSchedule(stepsPerEpoch: 1, totalSteps: 1, hasValidation: false) }
    }
}
