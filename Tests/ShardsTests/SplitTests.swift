import Foundation
import Shards
import Support
import Testing
import TestSupport

@Suite struct SplitAssignmentTests {
    @Test func largestRemainder() {
        let w = [800_000, 100_000, 100_000]
        #expect(SplitAssignment.apportion(10, weights: w, tieOrder: [0, 1, 2]) == [8, 1, 1])
        #expect(SplitAssignment.apportion(3, weights: w, tieOrder: [0, 1, 2]) == [3, 0, 0])      // 2.4, 0.3, 0.3
        #expect(SplitAssignment.apportion(5, weights: w, tieOrder: [0, 1, 2]) == [4, 1, 0])      // 4, 0.5, 0.5: tie → val
        #expect(SplitAssignment.apportion(5, weights: w, tieOrder: [2, 0, 1]) == [4, 0, 1])      // … or test
        #expect(SplitAssignment.apportion(7, weights: [1, 1], tieOrder: [1, 0]) == [3, 4])
        for n in 0..<200 {
            let c = SplitAssignment.apportion(n, weights: [700_000, 200_000, 100_000], tieOrder: [0, 1, 2])
            #expect(c.reduce(0, +) == n)
            for (s, r) in [0.7, 0.2, 0.1].enumerated() { #expect(abs(Double(c[s]) - Double(n) * r) < 1) }
        }
    }

    @Test func tinyClassesGoTrainThenValThenTest() {
        var rng = RandomSource(seed: 1)
        let w = [800_000, 100_000, 100_000]
        #expect(SplitAssignment.assign(sizes: [1], weights: w, rng: &rng) == [0])
        #expect(SplitAssignment.assign(sizes: [1, 1], weights: w, rng: &rng).sorted() == [0, 1])
        #expect(SplitAssignment.assign(sizes: [1, 5], weights: w, rng: &rng) == [1, 0])          // largest first
        #expect(SplitAssignment.assign(sizes: [2], weights: [500_000, 500_000], rng: &rng) == [0])
    }

    @Test func componentsFillTargetsLargestFirst() {
        var rng = RandomSource(seed: 3)
        // 20 records: targets 16, 2, 2. The 10-record component goes to train first.
        let sizes = [10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
        let a = SplitAssignment.assign(sizes: sizes, weights: [800_000, 100_000, 100_000], rng: &rng)
        var filled = [0, 0, 0]
        for (c, s) in a.enumerated() { filled[s] += sizes[c] }
        #expect(a[0] == 0 && filled == [16, 2, 2])
    }
}

/// `Split.run` on manifests written by the tests. Each test uses its own temporary folder.
@Suite struct SplitTests {
    static let fields = ManifestOptions(imageField: "image_url", labelField: "latin_name")

    /// A folder with `lines` as raw/raw.jsonl; returns (folder, options writing to folder/out).
    func setUp(_ lines: [String], group: Bool = false) throws -> (URL, SplitOptions) {
        let dir = try TestSupport.makeTempDir("distrainer-split")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("raw"), withIntermediateDirectories: true)
        let input = dir.appendingPathComponent("raw/raw.jsonl").path
        try SplitFixtures.write(lines, to: input)
        var o = SplitOptions(input: input, outDir: dir.appendingPathComponent("out").path)
        o.manifest = Self.fields
        if group { o.manifest.groupField = "obs" }
        return (dir, o)
    }

    func outputs(_ dir: URL, _ o: SplitOptions) throws -> [[ManifestRecord]] {
        try SplitFixtures.outputs(dir.appendingPathComponent("out"), names: o.splitNames, options: o.manifest)
    }

    /// Everything read is accounted for: valid = filtered + duplicates + conflicts + outputs.
    func expectAccounting(_ a: SplitAnalysis) {
        let filtered = a.filters.reduce(0) { $0 + $1.recordsRemoved }
        let written = a.outputs.reduce(0) { $0 + $1.records }
        #expect(a.lines.valid == filtered + a.dedup.duplicateRecordsRemoved + a.labelConflicts.recordsRemoved + written)
        #expect(a.lines.total == a.lines.valid + a.lines.rejected + a.lines.blank)
    }

    @Test func noLeakageNoDuplicatesWithGroups() throws {
        let g = SplitFixtures.generate(classes: 40, sizes: [1, 2, 3, 7, 12, 30, 55], duplicateRate: 0.4, conflicts: 5, groupRuns: 3)
        let (dir, o) = try setUp(g.lines, group: true)
        defer { TestSupport.removeTree(dir) }
        let a = try Split.run(o)
        let splits = try outputs(dir, o)
        var splitOfImage: [String: Int] = [:], splitOfGroup: [String: Int] = [:]
        for (s, records) in splits.enumerated() {
            for r in records {
                #expect(splitOfImage.updateValue(s, forKey: r.image) == nil, "image \(r.image) kept twice or in two splits")
                if let g = r.group, let prior = splitOfGroup.updateValue(s, forKey: g) { #expect(prior == s, "group \(g) in two splits") }
            }
        }
        #expect(splitOfImage.count == g.uniqueImages)                     // keep-first keeps one record per image
        #expect(a.leakage.ok && a.leakage.recordsChecked == splitOfImage.count)
        #expect(a.leakage.imagesInSeveralSplits == 0 && a.leakage.groupsInSeveralSplits == 0 && a.leakage.imagesKeptTwice == 0)
        #expect(a.labelConflicts.images == g.conflictedImages)
        #expect(a.dedup.recordsAfter == g.uniqueImages)
        #expect(a.components.multiRecord > 0)
        expectAccounting(a)
    }

    /// Independent single-record components: every class with at least 3 records is within ±1
    /// of its ratio in every split, duplicates notwithstanding; tiny classes follow the rule.
    @Test func exactStratification() throws {
        let sizes = Array(1...45)
        let g = SplitFixtures.generate(classes: 45, sizes: sizes, duplicateRate: 0.3)
        let (dir, o) = try setUp(g.lines)
        defer { TestSupport.removeTree(dir) }
        let a = try Split.run(o)
        let splits = try outputs(dir, o)
        #expect(a.dedup.recordsAfter == sizes.reduce(0, +) && a.dedup.duplicateRecordsRemoved == g.lines.count - g.uniqueImages)
        for c in 0..<45 {
            let label = "Species \(String(format: "%04d", c))"
            let counts = splits.map { $0.filter { $0.label == label }.count }
            let n = sizes[c]
            #expect(counts.reduce(0, +) == n)
            switch n {
            case 1: #expect(counts == [1, 0, 0])
            case 2: #expect(counts == [1, 1, 0])
            default:
                for (s, r) in o.ratios.enumerated() { #expect(abs(Double(counts[s]) - Double(n) * r) < 1, "\(label): \(counts)") }
            }
            let pc = a.perClass.first { $0.name == label }
            #expect(pc?.counts == counts && pc?.total == n)
        }
        let tiny = a.stratification.tooSmallToStratify
        #expect(tiny.map(\.name) == ["Species 0000", "Species 0001"])
        #expect(tiny.map(\.assigned) == [["train"], ["train", "val"]])
        #expect(a.stratification.missingFromTrain.isEmpty)
        expectAccounting(a)
    }

    /// A group holding two labels is one component, stratified under its most common label.
    @Test func multiLabelComponentFollowsItsMajorityLabel() throws {
        var lines = [
            #"{"image_url": "https://x.org/g1.jpg", "latin_name": "B", "obs": "g"}"#,
            #"{"image_url": "https://x.org/g2.jpg", "latin_name": "A", "obs": "g"}"#,
            #"{"image_url": "https://x.org/g3.jpg", "latin_name": "A", "obs": "g"}"#,
        ]
        for i in 0..<9 { lines.append(#"{"image_url": "https://x.org/a\#(i).jpg", "latin_name": "A"}"#) }
        let (dir, o) = try setUp(lines, group: true)
        defer { TestSupport.removeTree(dir) }
        let a = try Split.run(o)
        #expect(a.components.count == 10 && a.components.multiLabel == 1 && a.components.largest == 3)
        #expect(a.stratification.tooSmallToStratify.isEmpty)              // B has no component of its own
        let splits = try outputs(dir, o)
        let ofGroup = splits.indices.filter { s in splits[s].contains { $0.group == "g" } }
        #expect(ofGroup.count == 1 && splits[ofGroup[0]].filter { $0.group == "g" }.count == 3)
        // A's stratum holds 12 records (the group's 3 count toward A): targets 10, 1, 1.
        #expect(splits.map(\.count).reduce(0, +) == 12 && a.perClass.first { $0.name == "B" }?.total == 1)
    }

    @Test func labelConflictPolicies() throws {
        let lines = [
            #"{"image_url": "https://x.org/1.jpg", "latin_name": "A"}"#,
            #"{"image_url": "https://x.org/2.jpg", "latin_name": "A"}"#,
            #"{"image_url": "https://X.org/1.jpg", "latin_name": "B"}"#,       // same image (host case), other label
            #"{"image_url": "https://x.org/1.jpg", "latin_name": "A"}"#,
            #"{"image_url": "https://x.org/2.jpg", "latin_name": "A"}"#,       // plain duplicate
            #"{"image_url": "https://x.org/3.jpg", "latin_name": "B"}"#,
        ]
        for policy in LabelConflictPolicy.allCases {
            var (dir, o) = try setUp(lines)
            defer { TestSupport.removeTree(dir) }
            o.onLabelConflict = policy
            if policy == .error {
                #expect(throws: ManifestError(file: o.input, line: 3, reason: "label conflict",
                                              detail: #"https://x.org/1.jpg is labelled "B" here and "A" on line 1"#)) { try Split.run(o) }
                continue
            }
            let a = try Split.run(o)
            let kept = try outputs(dir, o).flatMap { $0 }.map { "\($0.image) \($0.label)" }.sorted()
            #expect(a.labelConflicts.images == 1 && a.labelConflicts.records == 3)
            #expect(a.labelConflicts.examples.count == 1)
            #expect(a.labelConflicts.examples.first?.image == "https://x.org/1.jpg")
            #expect(a.labelConflicts.examples.first?.labels == ["A", "B"] && a.labelConflicts.examples.first?.lines == [1, 3, 4])
            #expect(a.dedup.duplicateRecordsRemoved == 1 && a.dedup.duplicatedImages == 1)
            if policy == .keepFirst {
                #expect(a.labelConflicts.recordsRemoved == 2)
                #expect(kept == ["https://x.org/1.jpg A", "https://x.org/2.jpg A", "https://x.org/3.jpg B"])
            } else {
                #expect(a.labelConflicts.recordsRemoved == 3)
                #expect(kept == ["https://x.org/2.jpg A", "https://x.org/3.jpg B"])
            }
            expectAccounting(a)
        }
    }

    @Test func deterministicFromTheSeed() throws {
        let g = SplitFixtures.generate(classes: 30, sizes: [4, 9, 20, 33], duplicateRate: 0.3, conflicts: 3, groupRuns: 2)
        let (dir, o) = try setUp(g.lines, group: true)
        defer { TestSupport.removeTree(dir) }
        let files = ["train.jsonl", "val.jsonl", "test.jsonl", "classes.json", "class_weights.json", "split_analysis.json"]
        func run(seed: UInt64, into name: String) throws -> [Data] {
            var p = o
            p.seed = seed
            p.outDir = dir.appendingPathComponent(name).path
            _ = try Split.run(p)
            return try files.map { try Data(contentsOf: dir.appendingPathComponent(name).appendingPathComponent($0)) }
        }
        let first = try run(seed: 1, into: "a"), again = try run(seed: 1, into: "b"), other = try run(seed: 2, into: "c")
        #expect(first == again)
        #expect(first[0] != other[0] && first[1] != other[1])
        #expect(first[3] == other[3])                                         // same classes
    }

    @Test func filtersWithExactCounts() throws {
        // 6 classes × 10 images; region cycles EU_SW, EU_NE, NA (none every 10th); licence cycles.
        let licences = ["CC-BY 4.0", "cc-by-nc", "CC0", "All rights reserved", "public domain"]
        var lines: [String] = []
        for c in 0..<6 {
            for i in 0..<10 {
                let n = c * 10 + i
                let region = n % 10 == 9 ? "" : #", "region": "\#(["EU_SW", "EU_NE", "NA"][n % 3])""#
                let licence = n % 7 == 6 ? "" : #", "license": "\#(licences[n % 5])""#
                lines.append(#"{"image_url": "https://x.org/\#(n).jpg", "latin_name": "C\#(c)"\#(region)\#(licence)}"#)
            }
        }
        // Expected by recomputing the same rules directly.
        func expected(_ keep: (Int) -> Bool) -> Int { (0..<60).filter(keep).count }
        let hasRegion = { (n: Int) in n % 10 != 9 }, inRegion = { (n: Int) in hasRegion(n) && n % 3 != 2 }
        let hasLicence = { (n: Int) in n % 7 != 6 }
        let permissive = { (n: Int) in hasLicence(n) && [0, 2, 4].contains(n % 5) }

        var (dir, o) = try setUp(lines)
        defer { TestSupport.removeTree(dir) }
        o.regions = ["EU_SW", "EU_NE"]
        o.licenses = Licenses.permissive
        var a = try Split.run(o)
        #expect(a.filters.map(\.name) == ["region", "license", "min_per_class", "max_per_class"])
        #expect(a.filters[0].enabled && a.filters[0].recordsBefore == 60)
        #expect(a.filters[0].recordsRemoved == 60 - expected(inRegion))
        #expect(a.filters[0].recordsWithoutField == 60 - expected(hasRegion))
        #expect(a.filters[1].recordsBefore == expected(inRegion))
        #expect(a.filters[1].recordsRemoved == expected(inRegion) - expected { inRegion($0) && permissive($0) })
        #expect(a.filters[1].recordsWithoutField == expected { inRegion($0) && !hasLicence($0) })
        #expect(a.outputs.reduce(0) { $0 + $1.records } == expected { inRegion($0) && permissive($0) })
        expectAccounting(a)

        // --license-allow with user spellings; only the licence filter.
        o.regions = nil
        o.licenses = ["CC-BY-4.0"]
        a = try Split.run(o)
        #expect(a.filters[1].recordsRemoved == 60 - expected { hasLicence($0) && $0 % 5 == 0 })
        #expect(!a.filters[0].enabled && a.filters[0].recordsRemoved == 0)

        // min / max per class: classes of 1…12 images.
        var sized: [String] = []
        for c in 0..<12 { for i in 0...c { sized.append(#"{"image_url": "https://x.org/\#(c)/\#(i).jpg", "latin_name": "K\#(c)"}"#) } }
        try SplitFixtures.write(sized, to: o.input)
        o.licenses = nil
        o.minPerClass = 4
        o.maxPerClass = 9
        a = try Split.run(o)
        let minF = a.filters[2], maxF = a.filters[3]
        #expect(minF.recordsBefore == 78 && minF.recordsRemoved == 1 + 2 + 3 && minF.classesRemoved == 3 && minF.classesBefore == 12)
        #expect(maxF.recordsBefore == 72 && maxF.recordsRemoved == 1 + 2 + 3 && maxF.classesRemoved == 0 && maxF.classesBefore == 9)
        let counts = Dictionary(a.perClass.map { ($0.name, $0.total) }, uniquingKeysWith: +)
        #expect(counts == ["K3": 4, "K4": 5, "K5": 6, "K6": 7, "K7": 8, "K8": 9, "K9": 9, "K10": 9, "K11": 9])
        expectAccounting(a)
        // The subsample is seeded: same seed → same records; another seed → others.
        let chosen = try outputs(dir, o).flatMap { $0 }.map(\.image).sorted()
        _ = try Split.run(o)
        #expect(try outputs(dir, o).flatMap { $0 }.map(\.image).sorted() == chosen)
        o.seed = 99
        _ = try Split.run(o)
        #expect(try outputs(dir, o).flatMap { $0 }.map(\.image).sorted() != chosen)
    }

    @Test func relativePathsAreRewrittenAndStillResolve() throws {
        let dir = try TestSupport.makeTempDir("distrainer-split")
        defer { TestSupport.removeTree(dir) }
        let raw = dir.appendingPathComponent("raw"), imgs = raw.appendingPathComponent("imgs")
        try FileManager.default.createDirectory(at: imgs, withIntermediateDirectories: true)
        let abs = dir.appendingPathComponent("abs.png").path
        for name in ["a.png", "b.png", "c.png"] { try Data(name.utf8).write(to: imgs.appendingPathComponent(name)) }
        try Data("same bytes".utf8).write(to: imgs.appendingPathComponent("d.png"))
        try Data("same bytes".utf8).write(to: URL(fileURLWithPath: abs))
        let lines = [
            #"{"z": 1, "image":  "imgs/a.png" , "label": "x", "note": "keep me"}"#,
            #"{"image": "./imgs/../imgs/b.png", "label": "x"}"#,
            #"{"image": "\#(abs)", "label": "x"}"#,
            #"{"image": "file://\#(imgs.path)/c.png", "label": "x"}"#,
            #"{"image": "imgs/d.png", "label": "x"}"#,
            #"{"image": "https://x.org/e.jpg", "label": "x"}"#,
        ]
        let input = raw.appendingPathComponent("m.jsonl").path
        try SplitFixtures.write(lines, to: input)
        var o = SplitOptions(input: input, outDir: dir.appendingPathComponent("deep/out").path)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("deep/out"), withIntermediateDirectories: true)
        try Data("stale".utf8).write(to: dir.appendingPathComponent("deep/out/test.jsonl"))       // from an earlier 3-way split
        o.ratios = [0.5, 0.5]
        var a = try Split.run(o)
        #expect(a.splits == ["train", "val"] && a.outputs.map(\.file) == ["train.jsonl", "val.jsonl"])
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("deep/out/test.jsonl").path))
        let out = dir.appendingPathComponent("deep/out")
        let text = try ["train", "val"].map { try String(contentsOf: out.appendingPathComponent("\($0).jsonl"), encoding: .utf8) }.joined()
        #expect(text.contains(#"{"z": 1, "image":  "../../raw/imgs/a.png" , "label": "x", "note": "keep me"}"#))
        #expect(text.contains(#""image": "../../raw/imgs/b.png""#))
        #expect(text.contains(lines[2]) && text.contains(lines[3]) && text.contains(lines[5]))   // absolute, file:// and URLs unchanged
        let records = try SplitFixtures.outputs(out, names: ["train", "val"], options: ManifestOptions()).flatMap { $0 }
        #expect(records.count == 6)
        for r in records where !r.isRemote { #expect(FileManager.default.fileExists(atPath: r.path), "\(r.path)") }
        #expect(a.dedup.contentDuplicates == 0)

        // With content dedup, d.png and abs.png (same bytes) are one image.
        o.dedupContent = true
        a = try Split.run(o)
        #expect(a.dedup.key == "image reference + content SHA-256")
        #expect(a.dedup.contentDuplicates == 1 && a.dedup.duplicateRecordsRemoved == 1 && a.dedup.contentUnreadable == 0)
        #expect(a.outputs.reduce(0) { $0 + $1.records } == 5)
    }

    @Test func badRecordsSkippedAndListed() throws {
        let g = SplitFixtures.generate(classes: 5, sizes: [6], duplicateRate: 0, badLines: 2)
        var (dir, o) = try setUp(g.lines + ["", "{\"image_url\": \"ftp://x/y.jpg\", \"latin_name\": \"Species 0000\"}"])
        defer { TestSupport.removeTree(dir) }
        #expect(throws: ManifestError.self) { try Split.run(o) }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/train.jsonl").path))
        o.manifest.onBadRecord = .skip
        let a = try Split.run(o)
        #expect(a.rejected.total == 3 && a.lines.rejected == 3 && a.lines.blank == 1)
        #expect(a.rejected.byReason == ["not JSON": 1, #"missing field "latin_name""#: 1, "unsupported URL scheme": 1])
        let rejected = try String(contentsOf: dir.appendingPathComponent("out/rejected.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(rejected.count == 3)
        #expect(rejected.compactMap { $0?["reason"] as? String } == ["not JSON", #"missing field "latin_name""#, "unsupported URL scheme"])
        #expect(rejected.compactMap { $0?["line"] as? Int } == [11, 21, 34])
        #expect((rejected[1]?["text"] as? String)?.hasPrefix(#"{"id": "bad1""#) == true)
        #expect(a.outputs.reduce(0) { $0 + $1.records } == 30)
        expectAccounting(a)
    }

    @Test func fingerprintsInTheAnalysis() throws {
        let g = SplitFixtures.generate(classes: 8, sizes: [5, 9], duplicateRate: 0.2)
        let (dir, o) = try setUp(g.lines)
        defer { TestSupport.removeTree(dir) }
        let a = try Split.run(o)
        #expect(a.inputFingerprint == (try Manifest.load(path: o.input, options: o.manifest).fingerprint))
        for out in a.outputs {
            let m = try Manifest.load(path: dir.appendingPathComponent("out/\(out.file)").path, options: o.manifest)
            #expect(out.fingerprint == m.fingerprint && out.records == m.records.count)
        }
        #expect(try SplitAnalysis.load(path: dir.appendingPathComponent("out/split_analysis.json").path) == a)
        let w = try ClassWeights.load(path: dir.appendingPathComponent("out/class_weights.json").path)
        #expect(w.classes == (try ClassList.load(path: dir.appendingPathComponent("out/classes.json").path).names))
        #expect(w.counts == a.perClass.map { $0.counts[0] })
    }

    @Test func invalidOptions() throws {
        let (dir, base) = try setUp([#"{"image_url": "a.png", "latin_name": "x"}"#])
        defer { TestSupport.removeTree(dir) }
        var cases: [SplitOptions] = []
        for ratios in [[0.8, 0.1], [0.5, 0.3, 0.1, 0.1], [1.0], [0.9, 0, 0.1], [0.9, -0.1, 0.2]] { var o = base; o.ratios = ratios; cases.append(o) }
        var o = base; o.minPerClass = 5; o.maxPerClass = 4; cases.append(o)
        o = base; o.beta = 1; cases.append(o)
        o = base; o.outDir = dir.appendingPathComponent("raw").path; o.input = dir.appendingPathComponent("raw/train.jsonl").path
        try SplitFixtures.write(["{}"], to: o.input)
        cases.append(o)                                                      // would overwrite its input
        for c in cases {
            #expect(throws: SplitError.self, "\(c.ratios)") { try Split.run(c) }
        }
        o = base; o.input = dir.appendingPathComponent("missing.jsonl").path
        #expect(throws: ManifestError.self) { try Split.run(o) }
        o = base; o.input = dir.appendingPathComponent("fifo.jsonl").path              // read twice: must be a file
        #expect(mkfifo(o.input, 0o600) == 0)
        #expect(throws: SplitError.invalidOption("\(o.input): must be a regular file (split reads it twice)")) { try Split.run(o) }
    }
}
