import Testing
import Foundation
import Model
import TestSupport

/// Real `distrainer train` runs: singleton and under `mpirun -n 2` / `-n 4`.
@Suite(.serialized) struct TrainRunTests {
    let common = ["--model", "refcnn", "--image-size", "28", "--channels", "1", "--lr", "0.05", "--seed", "3", "--quiet"]

    @Test func twoRanksTrainEndToEnd() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 512, test: 200)
        let run = dir.appendingPathComponent("run")
        let r = try TestSupport.mpirun(2, ["train", "--train", data.train, "--val", data.test, "--epochs", "2",
                                           "--batch-size", "64", "--out", run.path] + common)
        #expect(r.status == 0, "\(r.stderr)")
        let history = try Fixtures.history(run)
        #expect(history.count == 2)
        for (i, h) in history.enumerated() {
            #expect(h["epoch"] as? Int == i + 1)
            for key in ["train_loss", "train_acc", "val_loss", "val_acc", "images_per_sec", "seconds"] {
                #expect(h[key] is Double || h[key] is Int, "history line \(i + 1) lacks \(key)")
            }
            #expect(h["val_count"] as? Int == 200)   // every validation image counted exactly once
            #expect(h["steps"] as? Int == (i + 1) * 8)
        }
        // Two epochs should learn something (10 classes: chance is 0.1). Validation accuracy is not
        // asserted: after 16 steps the BatchNorm running statistics are still mostly their initial values.
        let loss = history.map { $0["train_loss"] as? Double ?? .infinity }
        #expect(loss[1] < loss[0])
        #expect((history.last?["train_acc"] as? Double ?? 0) > 0.3)
        let classes = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("classes.json"))) as? [String]
        #expect(classes?.count == 10)
        let weights = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("class_weights.json"))) as? [String: Any]
        #expect((weights?["balanced"] as? [Double])?.count == 10)
        let options = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("options.json"))) as? [String: String]
        #expect(options?["train_fingerprint"]?.count == 64)
        #expect(try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path).header.manifestFingerprint == options?["train_fingerprint"])
        for name in ["last.ckpt", "best.ckpt"] {
            let c = try Checkpoint.load(path: run.appendingPathComponent(name).path)
            #expect(c.header.model.architecture == "refcnn")
            #expect(c.header.classes == classes)
            #expect(c.parameters.count == c.header.parameterCount)
        }
        let last = try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path)
        #expect(last.header.epoch == 2 && last.header.step == 16)
        #expect(r.stdout.contains("best val_acc"))
    }

    @Test func fourRanksWithUnevenShards() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        // 250 training images, global batch 64: the last batch has 58 (uneven slices);
        // 101 validation images over 4 ranks: shards of 25 and 26.
        let data = try Fixtures.dataset(in: dir, train: 250, test: 101)
        let run = dir.appendingPathComponent("run")
        let r = try TestSupport.mpirun(4, ["train", "--train", data.train, "--val", data.test, "--epochs", "1",
                                           "--batch-size", "64", "--out", run.path] + common)
        #expect(r.status == 0, "\(r.stderr)")
        let h = try Fixtures.history(run)
        #expect(h.count == 1)
        #expect(h.first?["val_count"] as? Int == 101)
        #expect(h.first?["steps"] as? Int == 4)
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("best.ckpt").path))
    }

    /// N ranks with global batch B must compute what 1 rank computes on the same global batch.
    /// Without BatchNorm (whose batch statistics are per rank by design), parameters after 20
    /// steps agree within 1e-4 for 1, 2 and 4 ranks.
    @Test func dataParallelMatchesSingleRank() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 448, test: 10)
        var params: [Int: [Float]] = [:]
        for ranks in [1, 2, 4] {
            let run = dir.appendingPathComponent("run\(ranks)")
            let args = ["train", "--train", data.train, "--epochs", "3", "--max-steps", "20", "--batch-size", "64",
                        "--no-batchnorm", "--out", run.path] + common
            let r = ranks == 1 ? try TestSupport.distrainer(args) : try TestSupport.mpirun(ranks, args)
            #expect(r.status == 0, "\(ranks) ranks: \(r.stderr)")
            let c = try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path)
            #expect(c.header.step == 20)
            params[ranks] = c.parameters
        }
        let reference = try #require(params[1])
        let start = try { () -> [Float] in   // the run must actually have moved the parameters
            let net = try Architectures.build(ModelSpec(architecture: "refcnn", channels: 1, imageSize: 28, classes: 10, batchNorm: false))
            net.initializeParameters(seed: 3)
            return Array(net.store.parameterBuffer)
        }()
        #expect(zip(reference, start).map { abs($0 - $1) }.max()! > 1e-3)
        for ranks in [2, 4] {
            let p = try #require(params[ranks])
            #expect(p.count == reference.count)
            let maxDiff = zip(p, reference).map { abs($0 - $1) }.max() ?? .infinity
            #expect(maxDiff < 1e-4, "\(ranks) ranks differ from 1 rank by \(maxDiff)")
        }
    }

    /// oneDNN's blocked weight formats are chosen per CPU, and ranks exchange raw buffers: ranks
    /// that disagree (here one asks for OIHW, as a host with another CPU could choose another
    /// format) all fall back to OIHW with a warning. Blocked and OIHW storage compute the same
    /// numbers, so all three runs end with bitwise identical parameters.
    @Test func ranksAgreeOnTheWeightFormat() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 256, test: 10)
        func args(_ name: String, _ weights: String) -> [String] {
            ["train", "--train", data.train, "--epochs", "1", "--batch-size", "64", "--momentum", "0.9",
             "--conv-weights", weights, "--out", dir.appendingPathComponent(name).path] + common
        }
        var params: [String: [Float]] = [:]
        for (name, weights) in [("blocked", "blocked"), ("oihw", "oihw")] {
            let r = try TestSupport.mpirun(2, args(name, weights))
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stdout.contains("different oneDNN weight formats"))
            params[name] = try Checkpoint.load(path: dir.appendingPathComponent("\(name)/last.ckpt").path).parameters
        }
        // MPMD launch: rank 0 keeps OIHW, rank 1 blocked formats.
        let mixed = try TestSupport.run("mpirun", ["--oversubscribe", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1",
                                                   "-n", "1", TestSupport.distrainerPath] + args("mixed", "oihw")
                                                  + [":", "-n", "1", TestSupport.distrainerPath] + args("mixed", "blocked"))
        #expect(mixed.status == 0, "\(mixed.stderr)")
        #expect(mixed.stdout.contains("different oneDNN weight formats"), "\(mixed.stdout)")
        params["mixed"] = try Checkpoint.load(path: dir.appendingPathComponent("mixed/last.ckpt").path).parameters
        let blocked = try #require(params["blocked"])
        #expect(!blocked.isEmpty && params["oihw"] == blocked && params["mixed"] == blocked)
    }

    /// A run stopped after 2 epochs and resumed to 3 ends with the same parameters as 3 epochs in one go.
    @Test func resumeContinuesExactly() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 192, test: 64)
        let once = dir.appendingPathComponent("once"), split = dir.appendingPathComponent("split")
        let base = ["train", "--train", data.train, "--val", data.test, "--batch-size", "32"] + common
        #expect(try TestSupport.distrainer(base + ["--epochs", "3", "--out", once.path]).status == 0)
        #expect(try TestSupport.distrainer(base + ["--epochs", "2", "--out", split.path]).status == 0)
        let resumed = try TestSupport.distrainer(base + ["--epochs", "3", "--out", split.path, "--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("resuming"))
        let a = try Checkpoint.load(path: once.appendingPathComponent("last.ckpt").path)
        let b = try Checkpoint.load(path: split.appendingPathComponent("last.ckpt").path)
        #expect(a.parameters == b.parameters)
        #expect(a.state == b.state)
        #expect(try Fixtures.history(split).count == 3)
    }

    /// Stopped mid-epoch on 2 ranks and resumed on 4: the data order continues exactly (same
    /// virtual shards), so without BatchNorm the result equals an uninterrupted 2-rank run.
    @Test func resumeMidEpochOnAnotherWorldSize() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 448, test: 10)   // 7 steps per epoch
        let base = ["train", "--train", data.train, "--epochs", "3", "--batch-size", "64", "--no-batchnorm",
                    "--lr-schedule", "cosine"] + common
        let once = dir.appendingPathComponent("once"), split = dir.appendingPathComponent("split")
        #expect(try TestSupport.mpirun(2, base + ["--out", once.path]).status == 0)
        let stopped = try TestSupport.mpirun(2, base + ["--out", split.path, "--max-steps", "10"])
        #expect(stopped.status == 0, "\(stopped.stderr)")
        let mid = try Checkpoint.load(path: split.appendingPathComponent("last.ckpt").path)
        #expect(mid.header.step == 10 && mid.header.epoch == 1 && mid.header.sampler?.virtualShards == 64)
        #expect(mid.header.epochProgress?.count == 3)
        let resumed = try TestSupport.mpirun(4, base + ["--out", split.path, "--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("resuming") && resumed.stdout.contains("at step 10"))
        let a = try Checkpoint.load(path: once.appendingPathComponent("last.ckpt").path)
        let b = try Checkpoint.load(path: split.appendingPathComponent("last.ckpt").path)
        #expect(b.header.step == 21)
        let maxDiff = zip(a.parameters, b.parameters).map { abs($0 - $1) }.max() ?? .infinity
        #expect(maxDiff < 1e-5, "resumed run differs by \(maxDiff)")
        // The resumed epoch's training loss covers all its steps, not only those after the resume.
        let h1 = try Fixtures.history(once), h2 = try Fixtures.history(split).filter { $0["partial"] == nil }
        #expect(h2.count == 3)
        for (x, y) in zip(h1, h2) {
            #expect(abs((x["train_loss"] as? Double ?? 0) - (y["train_loss"] as? Double ?? 1)) < 1e-4)
        }
    }

    /// A run killed (SIGKILL) after a periodic checkpoint resumes from it and ends exactly where
    /// an uninterrupted run ends (one rank: bitwise).
    @Test func killedRunResumesFromItsLastCheckpoint() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 640, test: 10)
        let base = ["train", "--train", data.train, "--epochs", "4", "--batch-size", "32", "--checkpoint-every", "5"] + common
        let once = dir.appendingPathComponent("once"), killed = dir.appendingPathComponent("killed")
        #expect(try TestSupport.distrainer(base + ["--out", once.path]).status == 0)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.distrainerPath)
        p.arguments = base + ["--out", killed.path]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let ckpt = killed.appendingPathComponent("last.ckpt").path
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline && (try? Checkpoint.load(path: ckpt))?.header.step ?? 0 < 15 { usleep(5_000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let before = try Checkpoint.load(path: ckpt)   // never torn: written atomically
        #expect(before.header.step >= 5)
        let r = try TestSupport.distrainer(base + ["--out", killed.path, "--resume"])
        #expect(r.status == 0, "\(r.stderr)")
        let a = try Checkpoint.load(path: once.appendingPathComponent("last.ckpt").path)
        let b = try Checkpoint.load(path: ckpt)
        #expect(b.header.step == 80)
        #expect(a.parameters == b.parameters)
        #expect(a.state == b.state)
    }
}

/// Zoo models train under mpirun; torchvision-style safetensors weights load by name.
@Suite(.serialized) struct ZooTrainTests {
    @Test func mobilenetTrainsOnTwoRanksFromPretrainedWeights() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 64, test: 16)
        // "Pretrained" weights: a fresh mobilenetv2 with 1000 classes, written as safetensors.
        let donor = try Architectures.build(ModelSpec(architecture: "mobilenetv2", channels: 1, imageSize: 32, classes: 1000))
        donor.initializeParameters(seed: 9)
        let weights = dir.appendingPathComponent("mobilenet.safetensors").path
        try donor.exportSafeTensors(to: weights)
        let run = dir.appendingPathComponent("run")
        let r = try TestSupport.mpirun(2, ["train", "--train", data.train, "--val", data.test, "--model", "mobilenetv2",
                                           "--image-size", "32", "--channels", "1", "--epochs", "1", "--batch-size", "16",
                                           "--pretrained", weights, "--out", run.path, "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("pretrained"), "\(r.stdout)")
        let c = try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path)
        #expect(c.header.model.architecture == "mobilenetv2" && c.header.classes.count == 10)
        #expect(try Fixtures.history(run).first?["val_count"] as? Int == 16)
    }
}

@Suite(.serialized) struct BenchRunTests {
    /// Throughput JSON, and no system allocation per warmed-up step in the whole process (its own
    /// process, so every thread counts: 1 and 2 ranks, and 2 oneDNN/OpenMP threads, whose kernels'
    /// allocations come from the arena like the calling thread's).
    @Test func benchPrintsThroughputJSON() throws {
        for (ranks, threads) in [(1, 1), (2, 1), (1, 2)] {
            let args = ["bench", "--model", "refcnn", "--image-size", "16", "--batch-size", "8", "--steps", "2",
                        "--windows", "2", "--warmup", "1", "--threads", "\(threads)"]
            let r = ranks == 1 ? try TestSupport.distrainer(args) : try TestSupport.mpirun(ranks, args)
            #expect(r.status == 0, "\(r.stderr)")
            let line = try #require(r.stdout.split(separator: "\n").last)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(json["ranks"] as? Int == ranks)
            #expect((json["images_per_sec"] as? Double ?? 0) > 0)
            #expect((json["per_rank_images_per_sec"] as? [Double])?.count == ranks)
            #expect((json["peak_rss_mb"] as? [Double])?.allSatisfy { $0 > 0 } == true)
            let allocations = try #require(json["allocations_per_step"] as? [String: Double])
            #expect(allocations["overlap_on"] == 0 && allocations["overlap_off"] == 0, "\(ranks) ranks × \(threads) threads: \(allocations)")
            #expect((allocations["overlap_on_arena"] ?? 0) > 0)
        }
    }
}
