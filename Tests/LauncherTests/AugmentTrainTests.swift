import Foundation
import Testing
import TestSupport

/// Real `distrainer train` runs with augmentation: each sample's augmented (and mixed) input and
/// soft target are identical with 1 rank and under `mpirun -n 2`, and differ between epochs.
@Suite(.serialized) struct AugmentTrainTests {
    let common = ["--model", "refcnn", "--image-size", "28", "--channels", "1", "--lr", "0.05", "--seed", "3", "--quiet"]

    /// The dumped files of a run: name → floats.
    func dump(_ dir: URL) throws -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name.hasSuffix(".f32") {
            let data = try Data(contentsOf: dir.appendingPathComponent(name))
            out[name] = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        return out
    }

    @Test func augmentedSamplesAreIdenticalOnOneAndTwoRanks() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 256, test: 10)
        var dumps: [Int: [String: [Float]]] = [:]
        for ranks in [1, 2] {
            let run = dir.appendingPathComponent("run\(ranks)"), d = dir.appendingPathComponent("dump\(ranks)")
            let args = ["train", "--train", data.train, "--epochs", "2", "--batch-size", "32", "--out", run.path,
                        "--augment", "strong", "--rotate", "10", "--color-jitter", "0.3", "--mix-prob", "0.7",
                        "--normalize", "dataset", "--loader-threads", ranks == 1 ? "1" : "2",
                        "--dump-augmented", d.path] + common
            let r = ranks == 1 ? try TestSupport.distrainer(args) : try TestSupport.mpirun(ranks, args)
            #expect(r.status == 0, "\(ranks) ranks: \(r.stderr)")
            #expect(r.stdout.contains("augmentation: crop 0.25-1.0"), "\(r.stdout)")
            dumps[ranks] = try dump(d)
        }
        let one = try #require(dumps[1]), two = try #require(dumps[2])
        // Each epoch's first global batch: 32 samples, split over the ranks in the 2-rank run.
        #expect(one.count == 64, "\(one.count) files")
        #expect(Set(one.keys) == Set(two.keys))
        let sampleCount = 28 * 28
        var mixed = 0
        for (name, v) in one {
            #expect(v.count == sampleCount + 10)
            #expect(two[name] == v, "\(name) differs between 1 and 2 ranks")
            let target = v[sampleCount...]
            #expect(abs(target.reduce(0, +) - 1) < 1e-5, "\(name): target sums to \(target.reduce(0, +))")
            if target.filter({ $0 > 0 }).count > 1 { mixed += 1 }
        }
        #expect(mixed > 20, "only \(mixed) of 64 samples mixed at --mix-prob 0.7")
        // The same sample in another epoch (if it is in both first batches) gets other pixels;
        // with 256 samples and batches of 32 that may not happen, so compare the epochs' means too.
        let e0 = one.filter { $0.key.hasPrefix("e0-") }.values.map { Array($0[..<sampleCount]) }
        let e1 = one.filter { $0.key.hasPrefix("e1-") }.values.map { Array($0[..<sampleCount]) }
        #expect(e0.count == 32 && e1.count == 32)
        for (name, v) in one where name.hasPrefix("e0-") {
            if let w = one["e1-" + name.dropFirst(3)] { #expect(Array(v[..<sampleCount]) != Array(w[..<sampleCount])) }
        }
        #expect(!e0.contains { a in e1.contains { $0 == a } })
    }

    @Test func sameSampleInTwoEpochsGetsOtherPixels() throws {
        // A training set of one batch: every sample is in each epoch's first batch.
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 16, test: 4)
        let d = dir.appendingPathComponent("dump")
        let r = try TestSupport.distrainer(["train", "--train", data.train, "--epochs", "2", "--batch-size", "16",
                                            "--out", dir.appendingPathComponent("run").path, "--hflip", "--crop-scale", "0.5,1",
                                            "--dump-augmented", d.path] + common)
        #expect(r.status == 0, "\(r.stderr)")
        let files = try dump(d)
        #expect(files.count == 32)
        for i in 0..<16 {
            let a = try #require(files["e0-s\(i).f32"]), b = try #require(files["e1-s\(i).f32"])
            #expect(a != b, "sample \(i) got the same pixels in epochs 0 and 1")
        }
    }

    @Test func badAugmentationFlagsAreClearErrors() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        for (flags, message) in [(["--augment", "wild"], "--augment must be one of none, basic, strong"),
                                 (["--crop-scale", "0.5"], "--crop-scale needs two values"),
                                 (["--randaugment", "2,40"], "--randaugment needs N,M"),
                                 (["--normalize", "mnist"], "--normalize must be one of"),
                                 (["--hue-typo"], "Unknown option")] {
            let r = try TestSupport.distrainer(["train", "--train", "x.jsonl", "--out", dir.path] + flags)
            #expect(r.status != 0)
            #expect(r.stderr.contains(message), "\(flags): \(r.stderr)")
        }
    }
}
