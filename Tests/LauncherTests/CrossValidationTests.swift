import Testing
import Foundation
import Model
import TestSupport

/// `distrainer cv` over real MPI sub-communicators.
@Suite(.serialized) struct CrossValidationTests {
    let common = ["--model", "refcnn", "--image-size", "28", "--channels", "1", "--epochs", "1", "--batch-size", "32",
                  "--seed", "4", "--quiet"]

    func json(_ url: URL) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    /// Checks the run directory: every record predicted exactly once across folds, a complete
    /// summary, folds stratified within ±1 per class and leakage-free.
    func checkRun(_ run: URL, manifest: String, folds: Int) throws {
        let records = try String(contentsOfFile: manifest, encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        var predicted: [String: Int] = [:]
        for f in 0..<folds {
            let oof = try String(contentsOf: run.appendingPathComponent("fold-\(f)/oof.jsonl"), encoding: .utf8)
            for line in oof.split(separator: "\n") {
                let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                predicted[o["image"] as! String, default: 0] += 1
                #expect((o["probabilities"] as? [Double])?.count == 10)
                #expect(o["label"] is String && o["predicted"] is String)
            }
            #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("fold-\(f)/last.ckpt").path))
        }
        let images = records.map { $0["image"] as! String }
        #expect(predicted.count == Set(images).count)
        for image in Set(images) {
            let copies = images.filter { $0 == image }.count
            #expect(predicted[image] == copies, "\(image) predicted \(predicted[image] ?? 0) times")
        }
        let summary = try json(run.appendingPathComponent("cv_summary.json"))
        #expect(summary["complete_folds"] as? Int == folds)
        #expect((summary["folds"] as? [[String: Any]])?.count == folds)
        let oof = try #require(summary["oof"] as? [String: Double])
        #expect(oof["count"] == Double(records.count))
        let meanStd = try #require(summary["mean_std"] as? [String: [String: Double]])
        #expect(meanStd["accuracy"]?["mean"] != nil && meanStd["macro_f1"]?["std"] != nil)

        let foldsFile = try json(run.appendingPathComponent("folds.json"))
        let assignment = try #require(foldsFile["assignment"] as? [Int])
        #expect(assignment.count == records.count)
        let labels = records.map { $0["label"] as! String }
        for label in Set(labels) {
            let total = labels.filter { $0 == label }.count
            for f in 0..<folds {
                let n = labels.indices.filter { labels[$0] == label && assignment[$0] == f }.count
                #expect(abs(Double(n) - Double(total) / Double(folds)) <= 1.0 + 1e-9 || images.count != Set(images).count)
            }
        }
        var foldOfImage: [String: Int] = [:]
        for (i, image) in images.enumerated() {
            if let f = foldOfImage[image] { #expect(f == assignment[i], "\(image) straddles folds") } else { foldOfImage[image] = assignment[i] }
        }
    }

    @Test(arguments: [(4, 4), (4, 2), (2, 3), (1, 3)])
    func foldsInParallelGroups(ranks: Int, folds: Int) throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 240, test: 8)
        let run = dir.appendingPathComponent("cv")
        let args = ["cv", "--train", data.train, "--folds", "\(folds)", "--out", run.path] + common
        let r = ranks == 1 ? try TestSupport.distrainer(args) : try TestSupport.mpirun(ranks, args)
        #expect(r.status == 0, "\(r.stderr)")
        let groups = min(folds, ranks)
        #expect(r.stdout.contains("in \(groups) group(s) of \(ranks / groups)"), "\(r.stdout)")
        #expect(r.stdout.contains("oof"))
        try checkRun(run, manifest: data.train, folds: folds)
    }

    /// Records sharing an image reference stay in one fold.
    @Test func duplicatedImagesShareAFold() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 120, test: 8)
        let lines = try String(contentsOfFile: data.train, encoding: .utf8).split(separator: "\n").map(String.init)
        let manifest = dir.appendingPathComponent("dup.jsonl").path
        // The copies name the same images under new ids (duplicate ids are rejected as bad records).
        let copies = lines.prefix(40).map { $0.replacingOccurrences(of: "\"id\": \"", with: "\"id\": \"copy-") }
        try ((lines + copies).joined(separator: "\n") + "\n").write(toFile: manifest, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("cv")
        let r = try TestSupport.mpirun(2, ["cv", "--train", manifest, "--folds", "2", "--out", run.path] + common)
        #expect(r.status == 0, "\(r.stderr)")
        try checkRun(run, manifest: manifest, folds: 2)
    }

    /// Fold 0 trained inside `cv` equals a plain `train` on fold 0's split with the same seed.
    @Test func foldEqualsPlainTrainOnItsSplit() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 180, test: 8)
        let run = dir.appendingPathComponent("cv"), plain = dir.appendingPathComponent("plain")
        let cv = try TestSupport.distrainer(["cv", "--train", data.train, "--folds", "3", "--out", run.path] + common)
        #expect(cv.status == 0, "\(cv.stderr)")
        let fold = run.appendingPathComponent("fold-0")
        let t = try TestSupport.distrainer(["train", "--train", fold.appendingPathComponent("train.jsonl").path,
                                            "--val", fold.appendingPathComponent("val.jsonl").path,
                                            "--classes", run.appendingPathComponent("classes.json").path,
                                            "--out", plain.path] + common)
        #expect(t.status == 0, "\(t.stderr)")
        let a = try Checkpoint.load(path: fold.appendingPathComponent("last.ckpt").path)
        let b = try Checkpoint.load(path: plain.appendingPathComponent("last.ckpt").path)
        #expect(a.parameters == b.parameters)
        #expect(a.state == b.state)
    }

    /// Killed after fold 0 completes, resumed: fold 0 is not retrained and the summary equals a
    /// one-shot run's.
    @Test func resumeSkipsCompleteFolds() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 300, test: 8)
        let once = dir.appendingPathComponent("once"), killed = dir.appendingPathComponent("killed")
        let base = ["cv", "--train", data.train, "--folds", "3"] + common + ["--epochs", "2"]
        #expect(try TestSupport.distrainer(base + ["--out", once.path]).status == 0)

        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.distrainerPath)
        p.arguments = base + ["--out", killed.path]
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run()
        let done0 = killed.appendingPathComponent("fold-0/metrics.json").path
        let deadline = Date().addingTimeInterval(120)
        while p.isRunning && Date() < deadline && !FileManager.default.fileExists(atPath: done0) { usleep(5_000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: done0))
        let stamp = try FileManager.default.attributesOfItem(atPath: killed.appendingPathComponent("fold-0/last.ckpt").path)[.modificationDate] as? Date

        let r = try TestSupport.distrainer(base + ["--out", killed.path, "--resume"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("fold 0: complete"))
        let after = try FileManager.default.attributesOfItem(atPath: killed.appendingPathComponent("fold-0/last.ckpt").path)[.modificationDate] as? Date
        #expect(stamp == after)   // not retrained
        let a = try json(once.appendingPathComponent("cv_summary.json")), b = try json(killed.appendingPathComponent("cv_summary.json"))
        let fa = try #require(a["folds"] as? [[String: Any]]), fb = try #require(b["folds"] as? [[String: Any]])
        for (x, y) in zip(fa, fb) {
            #expect(x["metrics"] as? [String: Double] == y["metrics"] as? [String: Double])
            #expect(x["confusion"] as? [[Int]] == y["confusion"] as? [[Int]])
        }
        #expect(a["oof"] as? [String: Double] == b["oof"] as? [String: Double])
    }
}
