import Testing
import Foundation
import TestSupport

/// Bad manifests and images stop a run with an error naming file:line and the reason, or with
/// --skip-bad-records are skipped, counted and listed — never a crash, a hang or a silent drop.
@Suite(.serialized) struct BadInputTests {
    let common = ["--model", "refcnn", "--image-size", "28", "--channels", "1", "--epochs", "1", "--batch-size", "16", "--quiet"]

    /// A directory with a good 40-image manifest (good.jsonl) from the fixture data.
    func setUp() throws -> (dir: URL, lines: [String]) {
        let dir = try TestSupport.makeTempDir()
        let data = try Fixtures.dataset(in: dir, train: 40, test: 8)
        let lines = try String(contentsOfFile: data.train, encoding: .utf8).split(separator: "\n").map(String.init)
        return (dir, lines)
    }

    func write(_ lines: [String], to dir: URL, _ name: String = "bad.jsonl") throws -> String {
        let p = dir.appendingPathComponent(name).path
        try (lines.joined(separator: "\n") + "\n").write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// Replaces line 5 (1-based) with `bad`, runs train, and checks the error names bad.jsonl:5.
    func expectFailure(_ bad: String, reason: String) throws {
        let (dir, lines) = try setUp(); defer { TestSupport.removeTree(dir) }
        var l = lines; l[4] = bad
        let manifest = try write(l, to: dir)
        let r = try TestSupport.distrainer(["train", "--train", manifest, "--out", dir.appendingPathComponent("run").path] + common)
        #expect(r.status != 0)
        #expect(r.stderr.contains("bad.jsonl:5"), "stderr: \(r.stderr)")
        #expect(r.stderr.lowercased().contains(reason), "stderr: \(r.stderr)")
        // With --skip-bad-records the same manifest trains on the 39 good records.
        let run = dir.appendingPathComponent("skip")
        let s = try TestSupport.distrainer(["train", "--train", manifest, "--out", run.path, "--skip-bad-records"] + common)
        #expect(s.status == 0, "\(s.stderr)")
        let failed = try String(contentsOf: run.appendingPathComponent("failed_samples.jsonl"), encoding: .utf8)
        #expect(failed.split(separator: "\n").count == 1)
        #expect(failed.contains("bad.jsonl:5") || failed.contains("\"image\""), "failed_samples: \(failed)")
        let history = try Fixtures.history(run)
        let trained = (history.first?["train_acc"] != nil)
        #expect(trained)
    }

    @Test func lineThatIsNotJSON() throws { try expectFailure("{\"image\": \"train/x.png\", \"label\": ", reason: "json") }
    @Test func lineWithoutImage() throws { try expectFailure("{\"label\": \"Bag\"}", reason: "image") }
    @Test func lineWithoutLabel() throws { try expectFailure("{\"image\": \"train/00000.png\"}", reason: "label") }

    @Test func imageFileMissing() throws {
        try expectFailure("{\"image\": \"train/does-not-exist.png\", \"label\": \"Bag\"}", reason: "does-not-exist.png")
    }

    @Test func imageFileCorrupt() throws {
        let (dir, lines) = try setUp(); defer { TestSupport.removeTree(dir) }
        try Data("this is not a png".utf8).write(to: dir.appendingPathComponent("corrupt.png"))
        var l = lines; l[4] = "{\"image\": \"corrupt.png\", \"label\": \"Bag\"}"
        let manifest = try write(l, to: dir)
        let r = try TestSupport.distrainer(["train", "--train", manifest, "--out", dir.appendingPathComponent("run").path] + common)
        #expect(r.status != 0)
        #expect(r.stderr.contains("bad.jsonl:5") && r.stderr.contains("corrupt.png"), "stderr: \(r.stderr)")
        let run = dir.appendingPathComponent("skip")
        let s = try TestSupport.distrainer(["train", "--train", manifest, "--out", run.path, "--skip-bad-records"] + common)
        #expect(s.status == 0, "\(s.stderr)")
        #expect(try Fixtures.history(run).first?["skipped"] as? Int == 1)
        let failed = try String(contentsOf: run.appendingPathComponent("failed_samples.jsonl"), encoding: .utf8)
        #expect(failed.contains("corrupt.png"))
    }

    /// Under mpirun a rank that meets a corrupt image stops the whole job (no rank hangs).
    @Test func corruptImageStopsAllRanks() throws {
        let (dir, lines) = try setUp(); defer { TestSupport.removeTree(dir) }
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0]).write(to: dir.appendingPathComponent("truncated.png"))
        var l = lines; l[30] = "{\"image\": \"truncated.png\", \"label\": \"Bag\"}"
        let manifest = try write(l, to: dir)
        let r = try TestSupport.mpirun(2, ["train", "--train", manifest, "--out", dir.appendingPathComponent("run").path] + common,
                                       timeout: 120)
        #expect(r.status != 0)
        #expect(r.stderr.contains("bad.jsonl:31") && r.stderr.contains("truncated.png"), "stderr: \(r.stderr)")
    }

    @Test func labelNotInTrainingClasses() throws {
        let (dir, lines) = try setUp(); defer { TestSupport.removeTree(dir) }
        let train = try write(lines, to: dir, "train-good.jsonl")
        var v = Array(lines.prefix(6)); v[2] = v[2].replacingOccurrences(of: "\"label\":", with: "\"label\": \"Zebra\", \"old\":")
        let val = try write(v, to: dir, "val-bad.jsonl")
        let r = try TestSupport.distrainer(["train", "--train", train, "--val", val, "--out", dir.appendingPathComponent("run").path] + common)
        #expect(r.status != 0)
        #expect(r.stderr.contains("val-bad.jsonl:3") && r.stderr.contains("Zebra"), "stderr: \(r.stderr)")
    }
}
