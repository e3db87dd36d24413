import Testing
import Foundation
import Model
import TestSupport

/// Real `distrainer train` runs with accumulation, clipping, EMA, early stopping, best-K and resume.
@Suite(.serialized) struct RunControlTests {
    let common = ["--model", "refcnn", "--image-size", "28", "--channels", "1", "--lr", "0.05", "--seed", "5", "--quiet"]

    static func initialParameters(seed: UInt64, batchNorm: Bool) throws -> [Float] {
        let net = try Architectures.build(ModelSpec(architecture: "refcnn", channels: 1, imageSize: 28, classes: 10, batchNorm: batchNorm))
        net.initializeParameters(seed: seed)
        return Array(net.store.parameterBuffer)
    }

    static func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        a.count == b.count ? zip(a, b).map { abs($0 - $1) }.max() ?? 0 : .infinity
    }

    /// Global batch 64 as 1×64 and as 4×16 with --accum-steps 4 (2 real MPI ranks): the same
    /// parameters, and one gradient allreduce per optimizer step in both.
    @Test func accumulationEqualsOneBigBatch() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 320, test: 10)     // 5 steps of 64 per epoch
        let base = ["train", "--train", data.train, "--epochs", "2", "--no-batchnorm"] + common
        let big = dir.appendingPathComponent("big"), accum = dir.appendingPathComponent("accum")
        let r1 = try TestSupport.mpirun(2, base + ["--batch-size", "64", "--out", big.path])
        #expect(r1.status == 0, "\(r1.stderr)")
        let r2 = try TestSupport.mpirun(2, base + ["--batch-size", "16", "--accum-steps", "4", "--out", accum.path])
        #expect(r2.status == 0, "\(r2.stderr)")
        let a = try Checkpoint.load(path: big.appendingPathComponent("last.ckpt").path)
        let b = try Checkpoint.load(path: accum.appendingPathComponent("last.ckpt").path)
        #expect(a.header.step == 10 && b.header.step == 10)
        #expect(b.header.sampler?.globalBatch == 64)
        #expect(Self.maxDiff(a.parameters, try Self.initialParameters(seed: 5, batchNorm: false)) > 1e-3)
        let d = Self.maxDiff(a.parameters, b.parameters)
        #expect(d < 2e-5, "accumulated run differs by \(d)")
        for run in [big, accum] {
            let h = try Fixtures.history(run)
            #expect(h.count == 2)
            #expect(h.allSatisfy { $0["allreduce_per_step"] as? Double == 1 }, "\(h.map { $0["allreduce_per_step"] ?? "-" })")
        }
        // The per-epoch training loss covers the same samples.
        let la = try Fixtures.history(big).map { $0["train_loss"] as? Double ?? 0 }
        let lb = try Fixtures.history(accum).map { $0["train_loss"] as? Double ?? 1 }
        #expect(zip(la, lb).allSatisfy { abs($0 - $1) < 1e-4 })
    }

    /// Plain SGD (no momentum) for one step with --clip-grad-norm c moves the parameters by exactly
    /// lr × c (the gradient norm is larger than c).
    @Test func clippingBoundsTheUpdate() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 128, test: 10)
        let run = dir.appendingPathComponent("run")
        let r = try TestSupport.mpirun(2, ["train", "--train", data.train, "--epochs", "1", "--max-steps", "1", "--batch-size", "32",
                                           "--momentum", "0", "--no-batchnorm", "--clip-grad-norm", "0.01", "--out", run.path] + common)
        #expect(r.status == 0, "\(r.stderr)")
        let c = try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path)
        let p0 = try Self.initialParameters(seed: 5, batchNorm: false)
        let step = sqrt(zip(c.parameters, p0).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +))
        #expect(abs(step - 0.05 * 0.01) < 0.05 * 0.01 * 1e-2, "update norm \(step)")
        let norm = try #require(Fixtures.history(run).first?["grad_norm"] as? Double)
        #expect(norm > 0.01)
    }

    /// The EMA is evaluated alongside (val_*_ema) and saved; with a decay near 0 it is the weights.
    @Test func emaIsEvaluatedAndSaved() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 128, test: 64)
        for decay in ["0.000001", "0.9"] {
            let run = dir.appendingPathComponent("run\(decay)")
            let r = try TestSupport.distrainer(["train", "--train", data.train, "--val", data.test, "--epochs", "2", "--batch-size", "32",
                                                "--ema-decay", decay, "--out", run.path] + common)
            #expect(r.status == 0, "\(r.stderr)")
            let h = try Fixtures.history(run)
            for line in h { for k in ["val_acc_ema", "val_loss_ema", "val_macro_f1_ema", "val_macro_f1"] { #expect(line[k] is Double, "\(k)") } }
            let c = try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path)
            let ema = try #require(c.extras["ema"])
            #expect(ema.count == c.parameters.count + c.state.count)
            let d = Self.maxDiff(Array(ema[0..<c.parameters.count]), c.parameters)
            if decay == "0.9" {
                #expect(d > 1e-4)   // a real average lags the weights
            } else {
                #expect(d < 1e-5)
                for line in h {
                    #expect(line["val_acc_ema"] as? Double == line["val_acc"] as? Double)
                    #expect(abs((line["val_loss_ema"] as? Double ?? 0) - (line["val_loss"] as? Double ?? 1)) < 1e-4)
                }
            }
        }
    }

    /// --lr 0: val_loss never improves, so patience 2 stops after epoch 3 of 10.
    @Test func earlyStoppingStopsAfterPatience() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 64, test: 32)
        let run = dir.appendingPathComponent("run")
        let args = ["train", "--train", data.train, "--val", data.test, "--epochs", "10", "--batch-size", "32", "--lr", "0",
                    "--monitor", "val_loss", "--early-stop-patience", "2", "--out", run.path] + common.filter { $0 != "0.05" && $0 != "--lr" }
        let r = try TestSupport.distrainer(args)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("early stopping after epoch 3"), "\(r.stdout)")
        #expect(try Fixtures.history(run).count == 3)
        let c = try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path)
        #expect(c.header.runControl?.stopped == true && c.header.runControl?.bestEpoch == 1)
        // Resuming a stopped run does not train further.
        let again = try TestSupport.distrainer(args + ["--resume"])
        #expect(again.status == 0 && again.stdout.contains("already stopped early"), "\(again.stdout)")
        #expect(try Fixtures.history(run).count == 3)
    }

    /// --keep-best 2 by val_loss (minimised): exactly the two lowest epochs' files exist, best.ckpt
    /// is the lowest, and a huge --early-stop-min-delta stops after 1 + patience epochs.
    @Test func bestKCheckpointsFollowTheMonitor() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 128, test: 64)
        let run = dir.appendingPathComponent("run")
        let r = try TestSupport.distrainer(["train", "--train", data.train, "--val", data.test, "--epochs", "8", "--batch-size", "32",
                                            "--monitor", "val_loss", "--keep-best", "2", "--early-stop-patience", "4",
                                            "--early-stop-min-delta", "100", "--out", run.path] + common)
        #expect(r.status == 0, "\(r.stderr)")
        let h = try Fixtures.history(run)
        #expect(h.count == 5)
        var ranked: [(epoch: Int, loss: Double)] = h.map { (epoch: $0["epoch"] as? Int ?? 0, loss: $0["val_loss"] as? Double ?? 0) }
        ranked.sort { (x: (epoch: Int, loss: Double), y: (epoch: Int, loss: Double)) -> Bool in
            x.loss < y.loss || (x.loss == y.loss && x.epoch < y.epoch)
        }
        let expected = Set(ranked.prefix(2).map { String(format: "best-epoch%03d.ckpt", $0.epoch) })
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.hasPrefix("best-epoch") })
        #expect(files == expected)
        let best = try Checkpoint.load(path: run.appendingPathComponent("best.ckpt").path)
        #expect(best.header.epoch == ranked[0].epoch)
        let top = try Checkpoint.load(path: run.appendingPathComponent(String(format: "best-epoch%03d.ckpt", ranked[0].epoch)).path)
        #expect(top.parameters == best.parameters)
        #expect(r.stdout.contains("best val_loss"))
    }

    /// Train 4 epochs vs 2 + resume to 4 with accumulation, clipping, EMA, cosine, best-K and
    /// early-stopping counters: bitwise equal on one rank, within 1e-6 on two.
    @Test(arguments: [1, 2]) func resumeIsExact(ranks: Int) throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 192, test: 64)   // 3 steps of 64 per epoch
        let base = ["train", "--train", data.train, "--val", data.test, "--epochs", "4", "--batch-size", "32", "--accum-steps", "2",
                    "--clip-grad-norm", "1", "--ema-decay", "0.8", "--lr-schedule", "cosine", "--keep-best", "2",
                    "--monitor", "val_loss", "--early-stop-patience", "10", "--dropout", "0.2"] + common
        @discardableResult func train(_ args: [String]) throws -> String {
            let r = ranks == 1 ? try TestSupport.distrainer(base + args) : try TestSupport.mpirun(ranks, base + args)
            #expect(r.status == 0, "\(r.stderr)")
            return r.stdout
        }
        let once = dir.appendingPathComponent("once"), split = dir.appendingPathComponent("split")
        try train(["--out", once.path])
        try train(["--out", split.path, "--max-steps", "6"])
        #expect(try Checkpoint.load(path: split.appendingPathComponent("last.ckpt").path).header.step == 6)
        #expect(try train(["--out", split.path, "--resume"]).contains("resuming"))
        let a = try Checkpoint.load(path: once.appendingPathComponent("last.ckpt").path)
        let b = try Checkpoint.load(path: split.appendingPathComponent("last.ckpt").path)
        #expect(b.header.step == 12)
        let tolerance: Float = ranks == 1 ? 0 : 1e-6
        for (name, x, y) in [("parameters", a.parameters, b.parameters), ("optimizer", a.optimizerState, b.optimizerState),
                             ("state", a.state, b.state), ("ema", a.extras["ema"] ?? [], b.extras["ema"] ?? [1])] {
            let d = Self.maxDiff(x, y)
            #expect(d <= tolerance, "\(name) differs by \(d)")
        }
        #expect(a.header.runControl?.ranked.map(\.epoch) == b.header.runControl?.ranked.map(\.epoch))
        #expect(a.header.runControl?.badEpochs == b.header.runControl?.badEpochs)
        let files = { (u: URL) in Set(try FileManager.default.contentsOfDirectory(atPath: u.path).filter { $0.hasSuffix(".ckpt") }) }
        #expect(try files(once) == files(split))
        #expect(try files(split).filter { $0.hasPrefix("best-epoch") }.count == 2)
        let h1 = try Fixtures.history(once), h2 = try Fixtures.history(split)
        #expect(h2.count == 4)
        for (x, y) in zip(h1, h2) {
            for k in ["val_loss", "val_loss_ema", "train_loss"] {
                #expect(abs((x[k] as? Double ?? 0) - (y[k] as? Double ?? 1)) < 1e-6, "\(k)")
            }
        }
    }
}
