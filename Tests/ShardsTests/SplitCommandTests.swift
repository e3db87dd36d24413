import Foundation
import Shards
import Testing
import TestSupport

/// `distrainer split` run as a child process (the built executable), each in its own folder.
@Suite struct SplitCommandTests {
    /// A 20,000-line export written here: heavy URL duplication (about half the lines repeat an
    /// earlier URL), label conflicts, a long tail of small classes, and two bad lines.
    func acceptanceManifest(in dir: URL) throws -> (path: String, lines: [String]) {
        var g = SplitFixtures.generate(classes: 440, sizes: [1, 2, 3, 5, 8, 13, 21, 34, 55, 89], duplicateRate: 0.5, conflicts: 12,
                                       extra: { n, rng in #", "region": "R\#(n % 4)", "lat": \#(Double(rng.below(1000)) / 10 - 50)"# })
        #expect(g.lines.count >= 19_998)
        g.lines.removeLast(g.lines.count - 19_998)
        g.lines.insert(#"{"id": "bad-a", "image_url": "https://img.example.org/x.jpg", "latin_name": "#, at: 4_321)
        g.lines.insert(#"{"id": "bad-b", "image_url": "https://img.example.org/y.jpg", "lat": 12}"#, at: 15_000)
        let path = dir.appendingPathComponent("raw.jsonl").path
        try SplitFixtures.write(g.lines, to: path)
        return (path, g.lines)
    }

    @Test func acceptance() throws {
        let dir = try TestSupport.makeTempDir("distrainer-split-cli")
        defer { TestSupport.removeTree(dir) }
        let (input, lines) = try acceptanceManifest(in: dir)
        #expect(lines.count == 20_000)
        let out = dir.appendingPathComponent("DIR")
        let r = try TestSupport.distrainer(["split", "--input", input, "--out", out.path, "--ratios", "0.8,0.1,0.1", "--seed", "1",
                                            "--image-field", "image_url", "--label-field", "latin_name", "--on-bad-record", "skip"],
                                           timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("rejected 1: not JSON") && r.stdout.contains(#"rejected 1: missing field "latin_name""#), "\(r.stdout)")
        #expect(r.stdout.contains("leakage check: ok"))

        // No URL in two splits, none kept twice.
        let options = ManifestOptions(imageField: "image_url", labelField: "latin_name")
        let splits = try SplitFixtures.outputs(out, options: options)
        var seen = Set<String>()
        for records in splits { for rec in records { #expect(seen.insert(rec.image).inserted, "\(rec.image) written twice") } }
        let distinctInput = Set(lines.compactMap { line -> String? in
            guard let r = line.range(of: #""image_url": ""#), let end = line[r.upperBound...].firstIndex(of: "\"") else { return nil }
            return String(line[r.upperBound..<end])
        }.filter { !$0.hasSuffix("/x.jpg") && !$0.hasSuffix("/y.jpg") })
        #expect(seen == distinctInput)                      // every distinct image kept once (keep-first)

        // Every class's train share within ±2 records of 80 %.
        var perClass: [String: [Int]] = [:]
        for (s, records) in splits.enumerated() { for rec in records { perClass[rec.label, default: [0, 0, 0]][s] += 1 } }
        for (label, counts) in perClass {
            let total = counts.reduce(0, +)
            #expect(abs(Double(counts[0]) - 0.8 * Double(total)) <= 2, "\(label): \(counts)")
        }

        // The bad lines: counted, and listed with their reason.
        let a = try SplitAnalysis.load(path: out.appendingPathComponent("split_analysis.json").path)
        #expect(a.lines.total == 20_000 && a.lines.rejected == 2 && a.rejected.total == 2)
        #expect(a.rejected.byReason == ["not JSON": 1, #"missing field "latin_name""#: 1])
        let rejected = try String(contentsOf: out.appendingPathComponent("rejected.jsonl"), encoding: .utf8)
            .split(separator: "\n").compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(rejected.compactMap { $0["line"] as? Int } == [4_322, 15_001])
        #expect(rejected.compactMap { $0["text"] as? String } == [lines[4_321], lines[15_000]])
        #expect(a.leakage.ok && a.leakage.recordsChecked == seen.count)
        #expect(a.dedup.duplicateRecordsRemoved + a.labelConflicts.recordsRemoved == 19_998 - seen.count)
        #expect(a.labelConflicts.images > 0)
        for name in ["classes.json", "class_weights.json"] {
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path))
        }
    }

    @Test func errorPolicyNamesFileAndLine() throws {
        let dir = try TestSupport.makeTempDir("distrainer-split-cli")
        defer { TestSupport.removeTree(dir) }
        let input = dir.appendingPathComponent("raw.jsonl").path
        try SplitFixtures.write([#"{"image": "a.png", "label": "x"}"#, #"{"image": "b.png", "label": "x", "lat": 123}"#], to: input)
        let r = try TestSupport.distrainer(["split", "--input", input, "--out", dir.appendingPathComponent("out").path])
        #expect(r.status != 0)
        #expect(r.stderr.contains(#"\#(input):2: "lat" out of range: 123 is outside [-90, 90]"#), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/train.jsonl").path))
    }

    @Test func badArguments() throws {
        let dir = try TestSupport.makeTempDir("distrainer-split-cli")
        defer { TestSupport.removeTree(dir) }
        let input = dir.appendingPathComponent("raw.jsonl").path
        try SplitFixtures.write([#"{"image": "a.png", "label": "x"}"#], to: input)
        let base = ["split", "--input", input, "--out", dir.appendingPathComponent("out").path]
        for (extra, message) in [(["--ratios", "0.5,0.6"], "sum to 1"), (["--ratios", "0.8,x"], "not a number"),
                                 (["--on-label-conflict", "merge"], "keep-first, drop or error"),
                                 (["--on-bad-record", "ignore"], "error or skip"),
                                 (["--production-only", "--license-allow", "cc0"], "not both"),
                                 (["--min-per-class", "5", "--max-per-class", "2"], "larger than")] {
            let r = try TestSupport.distrainer(base + extra)
            #expect(r.status != 0 && r.stderr.contains(message), "\(extra): \(r.stderr)")
        }
        let help = try TestSupport.distrainer(["split", "--help"])
        #expect(help.status == 0 && help.stdout.contains("cc-by-sa") && help.stdout.contains("--production-only"))
    }
}
