import Testing
import Foundation
import Shards
import TestSupport

/// Real `distrainer evaluate` / `predict` runs on checkpoints trained by `distrainer train`.
@Suite(.serialized) struct EvaluateCommandTests {
    let common = ["--model", "refcnn", "--image-size", "28", "--channels", "1", "--lr", "0.05", "--seed", "3", "--quiet"]

    /// Trains refcnn on one rank (batch 32) on `train` into `dir/run`; returns its last.ckpt.
    func trainedCheckpoint(_ train: String, in dir: URL, epochs: Int) throws -> String {
        let run = dir.appendingPathComponent("run")
        let t = try TestSupport.distrainer(["train", "--train", train, "--epochs", "\(epochs)", "--batch-size", "32", "--out", run.path] + common)
        #expect(t.status == 0, "\(t.stderr)")
        return run.appendingPathComponent("last.ckpt").path
    }

    static func json(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    static func lines(_ url: URL) throws -> [[String: Any]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    static func png(_ url: URL) throws -> Image {
        try PNGCodec.decode(Data(contentsOf: url), channels: 3, source: url.path)
    }

    /// Acceptance (issue 7): train on 2 ranks with AdamW, cosine after a 1-epoch warm-up and the
    /// focal loss, evaluate best.ckpt on 2 ranks; metrics.json is consistent with itself and
    /// counts every test image once; the other outputs agree with it.
    @Test func trainThenEvaluateOnTwoRanks() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 512, test: 151)
        let run = dir.appendingPathComponent("run"), eval = dir.appendingPathComponent("eval")
        let t = try TestSupport.mpirun(2, ["train", "--train", data.train, "--val", data.test, "--epochs", "2",
                                           "--batch-size", "64", "--optimizer", "adamw", "--lr", "0.003", "--scheduler", "cosine",
                                           "--warmup-epochs", "1", "--loss", "focal", "--out", run.path] + common)
        #expect(t.status == 0, "\(t.stderr)")
        let curves = try Self.png(run.appendingPathComponent("curves.png"))
        #expect(curves.width > 400 && curves.height > 200)
        let r = try TestSupport.mpirun(2, ["evaluate", "--checkpoint", run.appendingPathComponent("best.ckpt").path,
                                           "--data", data.test, "--out", eval.path, "--batch-size", "40"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("weighted avg") && r.stdout.contains("151 images, 2 rank(s)"), "\(r.stdout)")
        let m = try Self.json(eval.appendingPathComponent("metrics.json"))
        let cm = try #require(m["confusion_matrix"] as? [[Int]])
        let classes = try #require(m["classes"] as? [String])
        #expect(cm.count == 10 && cm.allSatisfy { $0.count == 10 } && classes.count == 10)
        let count = cm.flatMap { $0 }.reduce(0, +), trace = (0..<10).map { cm[$0][$0] }.reduce(0, +)
        #expect(count == 151 && m["count"] as? Int == 151)
        let accuracy = try #require(m["accuracy"] as? Double)
        #expect(abs(accuracy - Double(trace) / 151) < 1e-12)
        #expect(m["top1"] as? Double == accuracy)
        let top3 = try #require(m["top3"] as? Double), top5 = try #require(m["top5"] as? Double)
        #expect(accuracy <= top3 && top3 <= top5 && top5 <= 1)
        // Per-class numbers and the averages from the matrix (rows = true class).
        let perClass = try #require(m["per_class"] as? [[String: Any]])
        var recalls: [Double] = [], f1s: [Double] = []
        for (i, row) in perClass.enumerated() {
            let support = cm[i].reduce(0, +), predicted = cm.map { $0[i] }.reduce(0, +)
            #expect(row["class"] as? String == classes[i] && row["support"] as? Int == support)
            let p = predicted > 0 ? Double(cm[i][i]) / Double(predicted) : 0, rc = support > 0 ? Double(cm[i][i]) / Double(support) : 0
            let f = p + rc > 0 ? 2 * p * rc / (p + rc) : 0
            #expect(abs((row["precision"] as? Double ?? -1) - p) < 1e-12 && abs((row["recall"] as? Double ?? -1) - rc) < 1e-12)
            #expect(abs((row["f1"] as? Double ?? -1) - f) < 1e-12)
            if support > 0 { recalls.append(rc) }
            if support > 0 || predicted > 0 { f1s.append(f) }
        }
        #expect(abs((m["balanced_accuracy"] as? Double ?? -1) - recalls.reduce(0, +) / Double(recalls.count)) < 1e-12)
        #expect(abs((m["macro_f1"] as? Double ?? -1) - f1s.reduce(0, +) / Double(f1s.count)) < 1e-12)
        let bins = try #require(m["calibration_bins"] as? [[String: Any]])
        #expect(bins.count == 15 && bins.map { $0["count"] as? Int ?? 0 }.reduce(0, +) == 151)
        let ece = try #require(m["ece"] as? Double)
        let eceFromBins = bins.map { b -> Double in
            guard let n = b["count"] as? Int, n > 0 else { return 0 }
            return Double(n) * abs((b["accuracy"] as! Double) - (b["confidence"] as! Double))
        }.reduce(0, +) / 151
        #expect(ece >= 0 && ece <= 1 && abs(ece - eceFromBins) < 1e-9)
        // errors.jsonl: exactly the misclassified images, each once, referenced as in the manifest.
        let errors = try Self.lines(eval.appendingPathComponent("errors.jsonl"))
        #expect(errors.count == count - trace)
        let manifest = try Self.lines(URL(fileURLWithPath: data.test))
        let references = Set(manifest.compactMap { $0["image"] as? String })
        #expect(Set(errors.compactMap { $0["image"] as? String }).count == errors.count)
        for e in errors {
            #expect(references.contains(e["image"] as? String ?? "?"))
            #expect(e["true"] as? String != e["predicted"] as? String)
            #expect((e["confidence"] as? Double ?? 0) >= (e["true_probability"] as? Double ?? 1))
        }
        var offDiagonal = [String: Int]()
        for e in errors { offDiagonal["\(e["true"]!)>\(e["predicted"]!)", default: 0] += 1 }
        for i in 0..<10 { for j in 0..<10 where i != j { #expect(offDiagonal["\(classes[i])>\(classes[j])", default: 0] == cm[i][j]) } }
        let report = try String(contentsOf: eval.appendingPathComponent("classification_report.txt"), encoding: .utf8)
        #expect(classes.allSatisfy { report.contains($0) } && report.contains(String(format: "%.4f", accuracy)))
        for name in ["confusion_matrix.png", "confusion_matrix_normalized.png"] {
            let image = try Self.png(eval.appendingPathComponent(name))
            #expect(image.width > 300 && image.height > 300, "\(name)")
        }
    }

    /// 1 rank and 3 ranks (uneven shards: 101 = 33 + 34 + 34) give the same metrics, with and
    /// without flip TTA. The counts are reduced exactly, so with one image per forward pass (each
    /// image's probabilities computed identically) metrics.json and errors.jsonl are identical
    /// (the loss, a float sum, to 1e-12). With larger batches BLAS rounds differently per batch
    /// shape (probabilities differ by ~1e-8): the confusion matrix and top-k still agree, ECE to 1e-6.
    @Test func threeRanksMatchOneRank() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 256, test: 101)
        let ckpt = try trainedCheckpoint(data.train, in: dir, epochs: 3)
        func evaluate(ranks: Int, tta: String, batch: Int) throws -> [String: Any] {
            let out = dir.appendingPathComponent("eval-\(tta)-\(ranks)-\(batch)")
            let args = ["evaluate", "--checkpoint", ckpt, "--data", data.test, "--out", out.path, "--tta", tta, "--batch-size", "\(batch)"]
            let r = ranks == 1 ? try TestSupport.distrainer(args) : try TestSupport.mpirun(ranks, args)
            #expect(r.status == 0, "\(r.stderr)")
            var m = try Self.json(out.appendingPathComponent("metrics.json"))
            #expect(m["count"] as? Int == 101 && m["ranks"] as? Int == ranks && m["tta"] as? String == tta)
            m["errors"] = try String(contentsOf: out.appendingPathComponent("errors.jsonl"), encoding: .utf8)
            for key in ["ranks", "seconds"] { m[key] = nil }
            return m
        }
        func differences(_ a: [String: Any], _ b: [String: Any]) throws -> [String] {
            try Set(a.keys).union(b.keys).sorted().filter { key in
                guard let x = a[key], let y = b[key] else { return true }
                let jx = try JSONSerialization.data(withJSONObject: ["v": x], options: [.sortedKeys])
                let jy = try JSONSerialization.data(withJSONObject: ["v": y], options: [.sortedKeys])
                return jx != jy
            }
        }
        var losses: [String: Double] = [:]
        for tta in ["none", "flip"] {
            let one = try evaluate(ranks: 1, tta: tta, batch: 1), three = try evaluate(ranks: 3, tta: tta, batch: 3)
            let l1 = try #require(one["loss"] as? Double), l3 = try #require(three["loss"] as? Double)
            #expect(abs(l1 - l3) <= 1e-12 * max(1, l1))
            #expect(try differences(one, three) == ["loss"] || differences(one, three).isEmpty, "\(tta)")
            losses[tta] = l1
            if tta == "none" {
                // Realistic batches: 24 over 3 ranks (8 each, uneven last batches) against 1 rank's 1.
                let big = try evaluate(ranks: 3, tta: tta, batch: 24)
                for key in ["confusion_matrix", "accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "top1", "top3", "top5", "count"] {
                    #expect(try !differences(one, big).contains(key), "\(key)")
                }
                #expect(abs((one["ece"] as? Double ?? 0) - (big["ece"] as? Double ?? 1)) < 1e-6)
            }
        }
        #expect(losses["none"] != losses["flip"])   // TTA changed the probabilities
    }

    /// evaluate runs on oneDNN by default (blocked activations and weights, filled from the
    /// checkpoint's OIHW values) and on OpenBLAS with `--conv-backend openblas`: the same
    /// predictions, the loss to float rounding.
    @Test func backendsGiveTheSameMetrics() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 128, test: 61)
        let ckpt = try trainedCheckpoint(data.train, in: dir, epochs: 2)
        var metrics: [String: [String: Any]] = [:]
        for backend in ["onednn", "openblas"] {
            let out = dir.appendingPathComponent("eval-\(backend)")
            let r = try TestSupport.mpirun(2, ["evaluate", "--checkpoint", ckpt, "--data", data.test, "--out", out.path, "--conv-backend", backend])
            #expect(r.status == 0, "\(r.stderr)")
            metrics[backend] = try Self.json(out.appendingPathComponent("metrics.json"))
        }
        let a = try #require(metrics["onednn"]), b = try #require(metrics["openblas"])
        #expect(a["count"] as? Int == 61)
        for key in ["accuracy", "macro_f1", "top1"] { #expect(a[key] as? Double == b[key] as? Double, "\(key)") }
        let la = try #require(a["loss"] as? Double), lb = try #require(b["loss"] as? Double)
        #expect(abs(la - lb) <= 1e-4 * max(1, lb), "loss \(la) vs \(lb)")
        let bad = try TestSupport.distrainer(["evaluate", "--checkpoint", ckpt, "--data", data.test,
                                              "--out", dir.appendingPathComponent("x").path, "--conv-backend", "cudnn"])
        #expect(bad.status != 0 && bad.stderr.contains("cudnn"), "\(bad.stderr)")
    }

    /// predict prints one JSON line per image in input order, with the top-k classes by
    /// probability; under mpirun the output is the same.
    @Test func predictPrintsTopK() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 128, test: 13)
        let ckpt = try trainedCheckpoint(data.train, in: dir, epochs: 1)
        let one = try TestSupport.distrainer(["predict", "--checkpoint", ckpt, "--data", data.test, "--top-k", "3"])
        #expect(one.status == 0, "\(one.stderr)")
        let two = try TestSupport.mpirun(2, ["predict", "--checkpoint", ckpt, "--data", data.test, "--top-k", "3"])
        #expect(two.status == 0, "\(two.stderr)")
        #expect(one.stdout == two.stdout)
        let lines = one.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let manifest = try Self.lines(URL(fileURLWithPath: data.test))
        #expect(lines.count == 13)
        for (l, rec) in zip(lines, manifest) {
            #expect(l["image"] as? String == rec["image"] as? String)
            #expect(l["label"] as? String == rec["label"] as? String)
            let top = try #require(l["top"] as? [[String: Any]])
            let p = top.compactMap { $0["probability"] as? Double }
            #expect(top.count == 3 && p.count == 3 && p[0] >= p[1] && p[1] >= p[2] && p.reduce(0, +) <= 1 + 1e-5)
        }
        // Image paths on the command line (and a manifest without labels).
        let first = manifest.prefix(2).map { (URL(fileURLWithPath: data.test).deletingLastPathComponent().path as NSString)
                                                .appendingPathComponent($0["image"] as! String) }
        let args = try TestSupport.distrainer(["predict", "--checkpoint", ckpt, "--top-k", "1"] + first)
        #expect(args.status == 0, "\(args.stderr)")
        let argLines = args.stdout.split(separator: "\n")
        #expect(argLines.count == 2 && argLines[0].contains(first[0]))
        let unlabeled = dir.appendingPathComponent("unlabeled.jsonl")
        try first.map { "{\"image\": \"\($0)\"}\n" }.joined().write(to: unlabeled, atomically: true, encoding: .utf8)
        let u = try TestSupport.distrainer(["predict", "--checkpoint", ckpt, "--data", unlabeled.path, "--top-k", "1"])
        #expect(u.status == 0, "\(u.stderr)")
        #expect(u.stdout == args.stdout)
    }

    @Test func badInputIsNamed() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 64, test: 4)
        let ckpt = try trainedCheckpoint(data.train, in: dir, epochs: 1)
        let bad = dir.appendingPathComponent("bad.jsonl")
        let firstLine = try String(contentsOfFile: data.test, encoding: .utf8).split(separator: "\n")[0]
        try (firstLine + "\n" + "{\"image\": \"x.png\", \"label\": \"Unicorn\"}\n").write(to: bad, atomically: true, encoding: .utf8)
        let r = try TestSupport.mpirun(2, ["evaluate", "--checkpoint", ckpt, "--data", bad.path, "--out", dir.appendingPathComponent("e").path])
        #expect(r.status != 0)
        #expect(r.stderr.contains("bad.jsonl:2") && r.stderr.contains("Unicorn"), "\(r.stderr)")
        let missing = try TestSupport.distrainer(["evaluate", "--checkpoint", dir.appendingPathComponent("nope.ckpt").path,
                                                  "--data", data.test, "--out", dir.appendingPathComponent("e").path])
        #expect(missing.status != 0 && missing.stderr.contains("nope.ckpt"), "\(missing.stderr)")
    }
}
