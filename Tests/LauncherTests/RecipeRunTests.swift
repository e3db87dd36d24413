import Testing
import Foundation
import Model
import TestSupport

/// Real `distrainer train` runs with the recipe options (losses, optimizers, schedules).
@Suite(.serialized) struct RecipeRunTests {
    let common = ["--model", "refcnn", "--image-size", "28", "--channels", "1", "--seed", "5", "--quiet"]

    /// The acceptance recipe on 2 ranks: AdamW, cosine after a 1-epoch warm-up, focal loss.
    @Test func adamwCosineWarmupFocalOnTwoRanks() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 256, test: 64)
        let run = dir.appendingPathComponent("run")
        let r = try TestSupport.mpirun(2, ["train", "--train", data.train, "--val", data.test, "--epochs", "3", "--batch-size", "64",
                                           "--optimizer", "adamw", "--weight-decay", "0.01", "--lr", "0.003", "--scheduler", "cosine",
                                           "--warmup-epochs", "1", "--loss", "focal", "--focal-gamma", "2", "--out", run.path] + common)
        #expect(r.status == 0, "\(r.stderr)")
        let history = try Fixtures.history(run)
        #expect(history.count == 3)
        // 4 steps per epoch: the last step of the warm-up epoch runs at the full rate; cosine then
        // decays over the remaining 8 steps (the last step of epoch 2 is step 7: t = 4/8).
        let lr = history.map { $0["lr"] as? Double ?? -1 }
        #expect(abs(lr[0] - 0.003) < 1e-9)
        #expect(abs(lr[1] - 0.003 * (1 + cos(Double.pi * 3 / 8)) / 2) < 1e-8)
        let loss = history.map { $0["train_loss"] as? Double ?? .infinity }
        #expect(loss[2] < loss[0], "focal training loss did not fall: \(loss)")
        let c = try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path)
        #expect(c.header.optimizer == "adamw" && c.optimizerState.count == c.header.optimizerStateCount)
        #expect(c.optimizerState.count > 2 * c.header.parameterCount)   // m, v and step counts
        #expect(c.header.schedule?.kind == .cosine && c.header.schedule?.warmupSteps == 4)
        #expect(c.header.options["loss"] == "focal" && c.header.options["optimizer"] == "adamw")
    }

    /// Weighted cross-entropy divides by the GLOBAL batch's weight sum, so 2 ranks compute what 1
    /// rank computes on the same global batch (without BatchNorm, whose statistics are per rank).
    @Test func weightedLossSameOnOneAndTwoRanks() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 320, test: 10)
        let names = Self.classNames(data.train)
        #expect(names.count >= 5)
        // Strongly unequal weights: per-rank normalisers would change the update.
        var weights: [String: Double] = [:]
        for (i, n) in names.enumerated() { weights[n] = [0.2, 3, 1, 0.5, 5][i % 5] }
        let file = dir.appendingPathComponent("weights.json")
        try JSONSerialization.data(withJSONObject: weights).write(to: file)
        var params: [[Float]] = []
        for ranks in [1, 2] {
            let run = dir.appendingPathComponent("run\(ranks)")
            let args = ["train", "--train", data.train, "--epochs", "2", "--batch-size", "64", "--no-batchnorm", "--lr", "0.05",
                        "--loss", "weighted-ce", "--class-weights", file.path, "--label-smoothing", "0.1", "--out", run.path] + common
            let r = ranks == 1 ? try TestSupport.distrainer(args) : try TestSupport.mpirun(ranks, args)
            #expect(r.status == 0, "\(ranks) ranks: \(r.stderr)")
            params.append(try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path).parameters)
        }
        // The same global batch as 2 accumulated micro-batches of 32: the weight sum is taken over
        // the whole step, not per micro-batch.
        let accum = dir.appendingPathComponent("accum")
        let r = try TestSupport.mpirun(2, ["train", "--train", data.train, "--epochs", "2", "--batch-size", "32", "--no-batchnorm", "--lr", "0.05",
                                           "--loss", "weighted-ce", "--class-weights", file.path, "--label-smoothing", "0.1",
                                           "--accum-steps", "2", "--out", accum.path] + common)
        #expect(r.status == 0, "accumulated: \(r.stderr)")
        params.append(try Checkpoint.load(path: accum.appendingPathComponent("last.ckpt").path).parameters)
        for (i, p) in params.enumerated().dropFirst() {
            let maxDiff = zip(params[0], p).map { abs($0 - $1) }.max() ?? .infinity
            #expect(maxDiff < 1e-4, "run \(i) (2 ranks\(i == 2 ? ", 2 micro-batches" : "")) differs from 1 rank by \(maxDiff)")
        }
    }

    /// Resuming with another optimizer is a clear error naming the checkpoint.
    @Test func resumeWithAnotherOptimizerIsRefused() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 64, test: 10)
        let run = dir.appendingPathComponent("run")
        let base = ["train", "--train", data.train, "--epochs", "2", "--batch-size", "32", "--out", run.path] + common
        let first = try TestSupport.distrainer(base + ["--optimizer", "adam", "--lr", "0.001", "--max-steps", "2"])
        #expect(first.status == 0, "\(first.stderr)")
        let again = try TestSupport.distrainer(base + ["--optimizer", "sgd", "--resume"])
        #expect(again.status != 0)
        #expect(again.stderr.contains("last.ckpt") && again.stderr.contains("adam optimizer state") && again.stderr.contains("--optimizer sgd"), "\(again.stderr)")
        let resumed = try TestSupport.distrainer(base + ["--optimizer", "adam", "--lr", "0.001", "--resume"])
        #expect(resumed.status == 0 && resumed.stdout.contains("resuming"), "\(resumed.stderr)")
    }

    /// Reduce-on-plateau acts at epoch ends on the monitored metric, and its state goes through
    /// the checkpoint: a run stopped after 2 epochs and resumed to 3 matches one that ran 3.
    @Test func plateauReducesAndResumes() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 96, test: 10)
        // Threshold 0.9: only a 90 % drop of train_loss counts as improvement, so with patience 0
        // epoch 2 is a bad epoch and the rate halves for epoch 3.
        let base = ["train", "--train", data.train, "--batch-size", "32", "--lr", "0.04", "--scheduler", "plateau",
                    "--plateau-patience", "0", "--plateau-threshold", "0.9", "--gamma", "0.5"] + common
        let once = dir.appendingPathComponent("once"), split = dir.appendingPathComponent("split")
        let r = try TestSupport.distrainer(base + ["--epochs", "3", "--out", once.path])
        #expect(r.status == 0, "\(r.stderr)")
        func lrs(_ run: URL) throws -> [Double] { try Fixtures.history(run).map { $0["lr"] as? Double ?? -1 } }
        let onceRates = try lrs(once)
        #expect(onceRates.count == 3 && zip(onceRates, [0.04, 0.04, 0.02]).allSatisfy { abs($0 - $1) < 1e-8 }, "\(onceRates)")
        let c = try Checkpoint.load(path: once.appendingPathComponent("last.ckpt").path)
        #expect(abs((c.header.schedule?.plateau.lr ?? 0) - 0.01) < 1e-9 && c.header.schedule?.plateau.mode == .min)   // epoch 3 was bad too
        #expect(try TestSupport.distrainer(base + ["--epochs", "2", "--out", split.path]).status == 0)
        let resumed = try TestSupport.distrainer(base + ["--epochs", "3", "--out", split.path, "--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try lrs(split) == onceRates)
        let d = try Checkpoint.load(path: split.appendingPathComponent("last.ckpt").path)
        #expect(d.parameters == c.parameters && d.header.schedule == c.header.schedule)
    }

    static func classNames(_ manifest: String) -> [String] {
        let text = (try? String(contentsOfFile: manifest, encoding: .utf8)) ?? ""
        var seen: [String] = []
        for line in text.split(separator: "\n") {
            if let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let l = o["label"] as? String, !seen.contains(l) { seen.append(l) }
        }
        return seen.sorted()
    }
}
