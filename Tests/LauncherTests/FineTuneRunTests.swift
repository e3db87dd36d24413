import Testing
import Foundation
import Model
import Shards
import TestSupport

/// Real `distrainer train` runs with --fusion and with --freeze / --unfreeze-at-epoch.
@Suite(.serialized) struct FineTuneRunTests {
    /// Noise images (8×8 gray PNGs) whose label is the lat/lon quadrant: only the metadata
    /// carries the class. Some training records have no coordinates (flag + zeros) or a source.
    static func quadrantDataset(in dir: URL, train: Int, val: Int) throws -> (train: String, val: String) {
        var state: UInt64 = 0x5EED
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * Double(next() % 1_000_000) / 1_000_000 }
        func write(_ name: String, count: Int, missing: Bool) throws -> String {
            var lines: [String] = []
            for i in 0..<count {
                let pixels = (0..<64).map { _ in UInt8(truncatingIfNeeded: next()) }
                let file = dir.appendingPathComponent("\(name)-\(i).png")
                try Data(try PNGCodec.encode(Image(width: 8, height: 8, channels: 1, pixels: pixels))).write(to: file)
                let lat = uniform(-60, 60), lon = uniform(-150, 150)
                let label = (lat > 0 ? 2 : 0) + (lon > 0 ? 1 : 0)
                var record: [String: Any] = ["image": file.path, "label": "q\(label)", "source": i % 3 == 0 ? "drone" : "phone"]
                if !(missing && i % 20 == 0) { record["lat"] = lat; record["lon"] = lon }
                lines.append(String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self))
            }
            let path = dir.appendingPathComponent("\(name).jsonl").path
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        return (try write("train", count: train, missing: true), try write("val", count: val, missing: false))
    }

    @Test func fusionLearnsALabelThatOnlyTheCoordinatesCarry() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Self.quadrantDataset(in: dir, train: 640, val: 200)
        let common = ["train", "--train", data.train, "--val", data.val, "--model", "refcnn", "--channels", "1", "--image-size", "8",
                      "--epochs", "8", "--batch-size", "32", "--lr", "0.05", "--seed", "2", "--quiet"]
        var accuracy: [Bool: Double] = [:]
        for fusion in [true, false] {
            let run = dir.appendingPathComponent(fusion ? "fusion" : "plain")
            let r = try TestSupport.distrainer(common + ["--out", run.path] + (fusion ? ["--fusion"] : []))
            #expect(r.status == 0, "\(r.stderr)")
            // The best epoch's validation accuracy (what best.ckpt keeps): the image branch
            // memorises its noise after a few epochs, which makes later epochs wobble.
            let perEpoch = try Fixtures.history(run).map { $0["val_acc"] as? Double ?? 0 }
            print("--fusion \(fusion): val_acc per epoch \(perEpoch)")
            accuracy[fusion] = perEpoch.max()
            if fusion {
                // The metadata statistics (from the training split) are saved with the model.
                let c = try Checkpoint.load(path: run.appendingPathComponent("best.ckpt").path)
                let f = try #require(c.header.model.fusion)
                #expect(f.sources == ["drone", "phone"] && f.width == 6)
                #expect(abs(f.latMean) < 10 && f.latStd > 25 && f.latStd < 45 && f.lonStd > 60)
                #expect(c.header.tensors.contains { $0.name == "fusion.metadata.0.weight" })
            }
        }
        // 4 classes: chance is 0.25 (200 validation images: ±0.03).
        #expect(accuracy[true] ?? 0 > 0.9, "with --fusion: \(accuracy)")
        #expect(accuracy[false] ?? 1 < 0.4, "without --fusion: \(accuracy)")
    }

    @Test func fusionWithoutCoordinatesIsAClearError() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 32, test: 8)
        let r = try TestSupport.distrainer(["train", "--train", data.train, "--out", dir.appendingPathComponent("run").path,
                                            "--channels", "1", "--image-size", "28", "--epochs", "1", "--fusion", "--quiet"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--fusion") && r.stderr.contains("lat"), "\(r.stderr)")
    }

    /// --freeze backbone keeps the backbone at its initial values for exactly the epochs before
    /// --unfreeze-at-epoch; two ranks agree (they resume from rank 0's checkpoint).
    @Test func unfreezeAtEpochStartsTrainingTheBackbone() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 128, test: 32)
        let common = ["train", "--train", data.train, "--model", "refcnn", "--channels", "1", "--image-size", "28", "--batch-size", "32",
                      "--epochs", "3", "--seed", "5", "--freeze", "backbone", "--unfreeze-at-epoch", "3", "--quiet"]
        let initial = try Architectures.build(ModelSpec(architecture: "refcnn", channels: 1, imageSize: 28, classes: 10))
        initial.initializeParameters(seed: 5)
        let backbone = initial.store.slots[initial.backboneTensorCount - 1].range.upperBound
        let bnState = initial.store.stateCount
        func checkpoint(_ run: URL) throws -> Checkpoint.Contents { try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path) }
        // Two epochs (8 steps): still frozen.
        let early = dir.appendingPathComponent("early")
        var r = try TestSupport.mpirun(2, common + ["--out", early.path, "--max-steps", "8"])
        #expect(r.status == 0, "\(r.stderr)")
        var c = try checkpoint(early)
        #expect(Array(c.parameters[..<backbone]) == Array(initial.store.parameterBuffer[..<backbone]))
        #expect(Array(c.parameters[backbone...]) != Array(initial.store.parameterBuffer[backbone...]))
        #expect(c.state == Array(initial.store.stateBuffer) && bnState > 0)   // frozen BatchNorms: eval mode
        #expect(c.optimizerState[..<backbone].allSatisfy { $0 == 0 })
        // Resumed into epoch 3: the backbone trains.
        r = try TestSupport.mpirun(2, common + ["--out", early.path, "--resume"])
        #expect(r.status == 0, "\(r.stderr)")
        c = try checkpoint(early)
        #expect(c.header.step == 12)
        #expect(Array(c.parameters[..<backbone]) != Array(initial.store.parameterBuffer[..<backbone]))
        #expect(c.state != Array(initial.store.stateBuffer))
        #expect(c.header.options["freeze"] == "backbone" && c.header.options["unfreeze_at_epoch"] == "3")
        // Only the trained tensors travel in the allreduce: the head while frozen, then everything.
        let elements = try Fixtures.history(early).compactMap { $0["allreduce_elements"] as? Int }
        #expect(elements == [initial.store.count - backbone, initial.store.count - backbone, initial.store.count])
    }

    /// With the backbone frozen (BatchNorm in eval mode), 2 ranks on half batches and 1 rank on the
    /// whole batch take the same steps: the head's summed gradients are complete although the
    /// backbone's are not communicated.
    @Test func frozenBackboneOnTwoRanksMatchesOneRank() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 128, test: 32)
        let common = ["train", "--train", data.train, "--model", "refcnn", "--channels", "1", "--image-size", "28", "--batch-size", "32",
                      "--epochs", "1", "--seed", "5", "--freeze", "backbone", "--max-steps", "3", "--augment", "none", "--quiet"]
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        var r = try TestSupport.distrainer(common + ["--out", one.path])
        #expect(r.status == 0, "\(r.stderr)")
        r = try TestSupport.mpirun(2, common + ["--out", two.path])
        #expect(r.status == 0, "\(r.stderr)")
        let a = try Checkpoint.load(path: one.appendingPathComponent("last.ckpt").path)
        let b = try Checkpoint.load(path: two.appendingPathComponent("last.ckpt").path)
        #expect(a.header.step == 3 && b.header.step == 3)
        let diff = zip(a.parameters, b.parameters).map { abs($0 - $1) }.max() ?? .infinity
        #expect(diff < 1e-5, "largest parameter difference \(diff)")
    }
}
