import Testing
import Foundation
import TestSupport

/// `--config run.yaml` and `--preset`: precedence, the saved resolved configuration, and an
/// error naming the file, line and key for every kind of bad entry.
@Suite struct RunConfigTests {
    static func config(_ run: URL) throws -> [String: String] {
        let text = try String(contentsOf: run.appendingPathComponent("config.yaml"), encoding: .utf8)
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { out[parts[0]] = parts[1] }
        }
        return out
    }

    @Test func presetThenFileThenCommandLine() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 40, test: 8)
        let run = dir.appendingPathComponent("run")
        let yaml = dir.appendingPathComponent("run.yaml").path
        try """
        # a run file
        preset: fast-dev
        train: \(data.train)
        out: \(run.path)
        channels: 1
        image_size: 28
        batch-size: 16
        epochs: 3          # beats the preset's 2
        lr: 0.5            # the command line's 0.01 wins
        widths: [4, 8]
        momentum: 0.8
        nesterov: true
        quiet: true
        cache-policy: fifo # invalid, but the command line replaces it
        seed:              # empty: the default

        """.write(toFile: yaml, atomically: true, encoding: .utf8)
        let r = try TestSupport.distrainer(["train", "--config", yaml, "--lr", "0.01", "--max-samples", "24",
                                            "--cache-policy", "lru"], timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let c = try Self.config(run)
        #expect(c["epochs"] == "3")            // file over preset
        #expect(c["lr"] == "0.01")             // command line over file
        #expect(c["max-samples"] == "24")      // command line over preset
        #expect(c["momentum"] == "0.8" && c["nesterov"] == "true" && c["widths"] == "4,8" && c["cache-policy"] == "lru")
        #expect(c["seed"] == "1" && c["image-size"] == "28" && c["model"] == "refcnn")   // defaults resolved too
        #expect(c["config"] == nil && c["preset"] == nil)
        let history = try Fixtures.history(run)
        #expect(history.count == 3)
        #expect((history.last?["lr"] as? Double).map { abs($0 - 0.01) < 1e-6 } == true)
        let options = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("options.json"))) as! [String: Any]
        #expect(options["max_samples"] as? String == "24" && options["momentum"] as? String == "0.8")

        // The preset alone: 2 epochs on at most 512 samples; the saved config loads back as a config.
        let run2 = dir.appendingPathComponent("run2")
        let r2 = try TestSupport.distrainer(["train", "--config", run.appendingPathComponent("config.yaml").path,
                                             "--preset", "fast-dev", "--out", run2.path, "--epochs", "2"], timeout: 120)
        #expect(r2.status == 0, "\(r2.stderr)")
        var c2 = try Self.config(run2)
        #expect(c2["out"] == run2.path)
        c2["out"] = run.path
        c2["epochs"] = "3"
        #expect(c2 == c)
        #expect(try Fixtures.history(run2).count == 2)
    }

    @Test func fastDevPresetOnItsOwn() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 600, test: 8)
        let run = dir.appendingPathComponent("run")
        let r = try TestSupport.distrainer(["train", "--preset", "fast-dev", "--train", data.train, "--out", run.path, "--channels", "1",
                                            "--image-size", "28", "--widths", "4,8", "--quiet"], timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let c = try Self.config(run)
        #expect(c["epochs"] == "2" && c["max-samples"] == "512")
        #expect(r.stdout.contains("512 training images"), "\(r.stdout)")
        #expect(try Fixtures.history(run).count == 2)
    }

    /// Each bad entry stops before training with `FILE:LINE: key "K": …` (no run directory made).
    @Test(arguments: [
        ("lrr: 0.1\n", ":3: key \"lrr\": unknown key"),
        ("lr: fast\n", ":3: key \"lr\": The value 'fast' is invalid for '--lr <lr>'"),
        ("cache_policy: fifo\n", ":3: key \"cache_policy\": --cache-policy must be lookahead or lru"),
        ("max-samples: 0\n", ":3: key \"max-samples\": --max-samples must be at least 1"),
        ("nesterov: 3\n", ":3: key \"nesterov\": \"nesterov\" is a flag: expected true or false"),
        ("model: {name: refcnn}\n", ":3: key \"model\": expected a value, a list, or true/false, not a mapping"),
        ("lr: 0.1\nlr: 0.2\n", ":4: key \"lr\": given twice (first on line 3)"),
        ("config: other.yaml\n", ":3: key \"config\": a config file cannot name another config file"),
        ("epochs: [1\n", ": invalid YAML"),
        ("preset: turbo\n", "unknown preset \"turbo\" (known: default, fast-dev)"),
    ])
    func badEntriesNameTheKey(entry: String, message: String) throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let yaml = dir.appendingPathComponent("bad.yaml").path
        let run = dir.appendingPathComponent("run")
        try "train: \(dir.path)/none.jsonl\nout: \(run.path)\n\(entry)".write(toFile: yaml, atomically: true, encoding: .utf8)
        let r = try TestSupport.distrainer(["train", "--config", yaml], timeout: 60)
        #expect(r.status != 0)
        #expect(r.stderr.contains(message), "\(r.stderr)")
        if message.hasPrefix(":") { #expect(r.stderr.contains(yaml + message), "\(r.stderr)") }
        #expect(!FileManager.default.fileExists(atPath: run.path))
    }

    @Test func missingFileAndTopLevelList() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let missing = dir.appendingPathComponent("none.yaml").path
        let r = try TestSupport.distrainer(["cv", "--config", missing], timeout: 60)
        #expect(r.status != 0 && r.stderr.contains("\(missing): cannot read the config file"), "\(r.stderr)")
        let list = dir.appendingPathComponent("list.yaml").path
        try "- lr: 1\n".write(toFile: list, atomically: true, encoding: .utf8)
        let r2 = try TestSupport.distrainer(["cv", "--config", list], timeout: 60)
        #expect(r2.status != 0 && r2.stderr.contains("\(list):1: expected a mapping of option names to values"), "\(r2.stderr)")
        // cv's own options are keys too.
        let cv = dir.appendingPathComponent("cv.yaml").path
        try "train: x.jsonl\nout: \(dir.path)/o\nfolds: many\n".write(toFile: cv, atomically: true, encoding: .utf8)
        let r3 = try TestSupport.distrainer(["cv", "--config", cv], timeout: 60)
        #expect(r3.status != 0 && r3.stderr.contains("\(cv):3: key \"folds\": The value 'many' is invalid"), "\(r3.stderr)")
    }
}
