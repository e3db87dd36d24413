import Foundation
import Shards
import Testing
import TestSupport

/// Schema mapping, metadata, image references, validation reasons and fingerprints.
@Suite struct ManifestValidationTests {
    func manifest(_ lines: [String], name: String = "raw.jsonl") throws -> (URL, String) {
        let dir = try TestSupport.makeTempDir()
        let path = dir.appendingPathComponent(name).path
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: path))
        return (dir, path)
    }

    static let good = #"{"id": "g", "image_url": "ok.png", "latin_name": "x"}"#

    @Test func schemaMappingAndMetadata() throws {
        let lines = [
            #"{"id": "r1", "image_url": "imgs/a.png", "latin_name": "Abies alba", "obs": "o1", "lat": 45.5, "lon": -7, "source": "inat", "region": "EU_SW", "license": "CC-BY 4.0", "extra": [1]}"#,
            #"{"latin_name": 12, "image_url": "file:///data/a%20b.png", "obs": 7, "lat": null, "region": ""}"#,
            #"{"image_url": "https://img.example.org/p/1.jpg", "latin_name": "B", "id": 42}"#,
        ]
        let (dir, path) = try manifest(lines)
        defer { TestSupport.removeTree(dir) }
        let m = try Manifest.load(path: path, options: ManifestOptions(imageField: "image_url", labelField: "latin_name", groupField: "obs"))
        #expect(m.records.count == 3)
        let a = m.records[0]
        #expect(a.image == "imgs/a.png" && a.path == dir.path + "/imgs/a.png" && a.label == "Abies alba" && a.group == "o1")
        #expect(a.metadata == RecordMetadata(id: "r1", lat: 45.5, lon: -7, source: "inat", region: "EU_SW", license: "CC-BY 4.0"))
        #expect(a.raw == lines[0] && a.line == 1 && !a.isRemote)
        let b = m.records[1]
        #expect(b.path == "/data/a b.png" && b.label == "12" && b.group == "7")
        #expect(b.metadata == RecordMetadata())            // null and "" are absent
        let c = m.records[2]
        #expect(c.path == "https://img.example.org/p/1.jpg" && c.isRemote && c.group == nil && c.metadata.id == "42")
        #expect(m.options.groupField == "obs")
    }

    @Test func imageReferenceForms() {
        let ok: [(String, ImageReference)] = [
            ("a/b.png", .path("a/b.png")), ("/abs/x.png", .path("/abs/x.png")), ("C:x.png", .path("C:x.png")),
            ("file:///abs/a%20b.png", .file(path: "/abs/a b.png")), ("file://localhost/abs/x.png", .file(path: "/abs/x.png")),
            ("file:/abs/y.png", .file(path: "/abs/y.png")), ("FILE:///z.png", .file(path: "/z.png")),
            ("http://x.org:8080/a.jpg?s=1#f", .remote(url: "http://x.org:8080/a.jpg?s=1#f")),
            ("https://[::1]:8443/a.jpg", .remote(url: "https://[::1]:8443/a.jpg")),
            ("https://user@例え.jp/画像.jpg", .remote(url: "https://user@例え.jp/画像.jpg")),
            ("https://x.org", .remote(url: "https://x.org")),
        ]
        for (text, expected) in ok { #expect(ImageReference.parse(text) == .success(expected), "\(text)") }
        let bad: [(String, String)] = [
            ("http://", "invalid URL"), ("https:///a.jpg", "invalid URL"), ("http:/x.org/a.jpg", "invalid URL"),
            ("https://exa mple.org/a.jpg", "invalid URL"), ("https://x.org:99999/a.jpg", "invalid URL"),
            ("https://x.org:8o/a.jpg", "invalid URL"), ("https://x.org/a%zz.jpg", "invalid URL"), ("https://x.org/{a}.jpg", "invalid URL"),
            ("http://[::1/a.jpg", "invalid URL"), ("file://otherhost/x.png", "invalid URL"), ("file:rel/x.png", "invalid URL"),
            ("file:///a%2", "invalid URL"), ("ftp://x.org/a.jpg", "unsupported URL scheme"), ("s3://bucket/key.png", "unsupported URL scheme"),
            ("data:image/png;base64,AAAA", "unsupported URL scheme"), ("a\u{0}b.png", "invalid path"),
        ]
        for (text, reason) in bad {
            guard case let .failure(p) = ImageReference.parse(text) else { Issue.record("accepted \(text)"); continue }
            #expect(p.reason == reason, "\(text): \(p)")
        }
    }

    @Test func canonicalKeysAndRelativePaths() {
        #expect(ImageReference.path("imgs/./a/../b.png").canonicalKey(baseDir: "/d/raw") == "/d/raw/imgs/b.png")
        #expect(ImageReference.file(path: "/d/raw//imgs/b.png").canonicalKey(baseDir: "/x") == "/d/raw/imgs/b.png")
        #expect(ImageReference.remote(url: "HTTPS://Img.Example.org/A.jpg").canonicalKey(baseDir: "/") == "https://img.example.org/A.jpg")
        #expect(ImageReference.normalize("/a/../../b/./c//") == "/b/c")
        #expect(ImageReference.normalize("a/../..") == "..")
        #expect(ImageReference.relative("/d/raw/img/a.png", from: "/d/out") == "../raw/img/a.png")
        #expect(ImageReference.relative("/d/out/img/a.png", from: "/d/out") == "img/a.png")
        #expect(ImageReference.relative("/d", from: "/d") == ".")
    }

    /// Every validation reason: one bad line among good ones. `.error` names file:line and the
    /// reason; `.skip` counts exactly that one line under that reason.
    static let reasons: [(line: String, reason: String)] = [
        (#"{"image_url": "http://", "latin_name": "x"}"#, "invalid URL"),
        (#"{"image_url": "https://exa mple.org/a.jpg", "latin_name": "x"}"#, "invalid URL"),
        (#"{"image_url": "file:rel/a.png", "latin_name": "x"}"#, "invalid URL"),
        (#"{"image_url": "ftp://x.org/a.jpg", "latin_name": "x"}"#, "unsupported URL scheme"),
        (#"{"image_url": "a\u0000.png", "latin_name": "x"}"#, "invalid path"),
        (#"{"image_url": "a.png", "latin_name": "x", "lat": "12.5"}"#, #""lat" is not a number"#),
        (#"{"image_url": "a.png", "latin_name": "x", "lon": true}"#, #""lon" is not a number"#),
        (#"{"image_url": "a.png", "latin_name": "x", "lat": 1e999}"#, #""lat" is not finite"#),
        (#"{"image_url": "a.png", "latin_name": "x", "lon": -1e400}"#, #""lon" is not finite"#),
        (#"{"image_url": "a.png", "latin_name": "x", "lat": 90.5}"#, #""lat" out of range"#),
        (#"{"image_url": "a.png", "latin_name": "x", "lon": -180.01}"#, #""lon" out of range"#),
        (#"{"image_url": "a.png", "latin_name": "x", "id": 1.5}"#, #""id" is not a string or integer"#),
        (#"{"image_url": "a.png", "latin_name": "x", "source": {}}"#, #""source" is not a string"#),
        (#"{"image_url": "a.png", "latin_name": "x", "region": 5}"#, #""region" is not a string"#),
        (#"{"image_url": "a.png", "latin_name": "x", "license": ["cc0"]}"#, #""license" is not a string"#),
        (#"{"image_url": "a.png", "latin_name": "x", "obs": ""}"#, #"empty "obs""#),
        (#"{"image_url": "a.png", "latin_name": "x", "obs": [1]}"#, #""obs" is not a string or integer"#),
        (#"{"image_url": "a.png", "latin_name": ""}"#, #"empty "latin_name""#),
        (#"{"image_url": "a.png", "latin_name": 2.5}"#, #""latin_name" is not a string or integer"#),
        (#"{"image_url": "a.png"}"#, #"missing field "latin_name""#),
        (#"{"image_url": "", "latin_name": "x"}"#, #"empty "image_url""#),
        (#"{"image_url": 3, "latin_name": "x"}"#, #""image_url" is not a string"#),
        (#"{"latin_name": "x"}"#, #"missing field "image_url""#),
        (#"["a.png", "x"]"#, "not a JSON object"),
        (#"{"image_url": "a.png", "latin_name": "x""#, "not JSON"),
        (#"{"id": "g", "image_url": "b.png", "latin_name": "x"}"#, #"duplicate "id""#),   // "g" is line 1's id
    ]

    static let options = ManifestOptions(imageField: "image_url", labelField: "latin_name", groupField: "obs")

    @Test(arguments: reasons)
    func eachReason(line: String, reason: String) throws {
        let (dir, path) = try manifest([Self.good, #"{"image_url": "ok2.png", "latin_name": "y", "lat": -90, "lon": 180}"#, line, Self.good.replacingOccurrences(of: "\"g\"", with: "\"h\"")])
        defer { TestSupport.removeTree(dir) }
        do {
            _ = try Manifest.load(path: path, options: Self.options)
            Issue.record("expected \(reason) for \(line)")
        } catch let e as ManifestError {
            #expect(e.file == path && e.line == 3 && e.reason == reason, "\(e)")
            #expect(e.description.hasPrefix("\(path):3: \(reason)"), "\(e)")
        }
        var skipping = Self.options
        skipping.onBadRecord = .skip
        let m = try Manifest.load(path: path, options: skipping)
        #expect(m.records.map(\.line) == [1, 2, 4])
        #expect(m.rejectedCounts == [reason: 1])
        #expect(m.rejected.count == 1 && m.rejected[0].line == 3 && m.rejected[0].reason.hasPrefix(reason))
    }

    @Test func duplicateIDNamesTheFirstLine() throws {
        let (dir, path) = try manifest([Self.good, #"{"id": "a", "image_url": "b.png", "latin_name": "x"}"#, #"{"id": "g", "image_url": "c.png", "latin_name": "x"}"#])
        defer { TestSupport.removeTree(dir) }
        #expect(throws: ManifestError(file: path, line: 3, reason: #"duplicate "id""#, detail: #""g" first seen on line 1"#)) {
            try Manifest.load(path: path, options: Self.options)
        }
        // An integer id and the same text as a string are the same id.
        let (dir2, path2) = try manifest([#"{"id": 7, "image": "a.png", "label": "x"}"#, #"{"id": "7", "image": "b.png", "label": "x"}"#])
        defer { TestSupport.removeTree(dir2) }
        #expect(try Manifest.load(path: path2, skipBad: true).rejectedCounts == [#"duplicate "id""#: 1])
    }

    @Test func exactCountsPerReasonWhenSkipping() throws {
        // Reason i appears i+1 times (ids made unique so only the intended reason fires).
        var lines = [Self.good]
        var expected: [String: Int] = [:]
        for (i, c) in Self.reasons.enumerated() where c.reason != #"duplicate "id""# {
            for k in 0...i {
                lines.append(c.line)
                lines.append(#"{"id": "ok-\#(i)-\#(k)", "image_url": "ok.png", "latin_name": "x"}"#)
            }
            expected[c.reason, default: 0] += i + 1
        }
        for _ in 0..<3 { lines.append(#"{"id": "g", "image_url": "d.png", "latin_name": "x"}"#) }
        expected[#"duplicate "id""#] = 3
        let (dir, path) = try manifest(lines + ["", "   "])
        defer { TestSupport.removeTree(dir) }
        var o = Self.options
        o.onBadRecord = .skip
        let m = try Manifest.load(path: path, options: o)
        #expect(m.rejectedCounts == expected)
        #expect(m.rejected.count == expected.values.reduce(0, +))
        #expect(m.records.count == 1 + (lines.count - 1 - m.rejected.count))
    }

    @Test func fingerprintIgnoresFormattingAndOtherFields() throws {
        let a = [#"{"image": "imgs/a.png", "label": "cat"}"#, #"{"image": "https://x.org/bé.jpg", "label": 7, "obs": "obs \"1\""}"#]
        let b = ["{ \"label\" :\"cat\",\"extra\":1, \"image\":\"imgs\\/a.png\" }", #"{"obs": "obs \"1\"", "id": "z", "label": 7, "image": "https://x.org/b\u00e9.jpg"}"#]
        let (d1, p1) = try manifest(a), (d2, p2) = try manifest(b)
        defer { TestSupport.removeTree(d1); TestSupport.removeTree(d2) }
        let o = ManifestOptions(groupField: "obs")
        let f1 = try Manifest.load(path: p1, options: o).fingerprint
        // SHA-256 of `["imgs/a.png","cat",null]\n["https://x.org/bé.jpg","7","obs \"1\""]\n`, by sha256sum.
        #expect(f1 == "00fc67b73f7a05273732474b49ccc4adc20aa52bc18785c227b15479a9a0a439")
        #expect(try Manifest.load(path: p2, options: o).fingerprint == f1)
        #expect(try Manifest.load(path: p1).fingerprint != f1)              // no group field: groups are null
        #expect(Manifest(path: "x", records: []).fingerprint == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        var m = try Manifest.load(path: p1, options: o)
        m.records.swapAt(0, 1)
        #expect(m.fingerprint != f1)                                         // order matters
        m.records.swapAt(0, 1)
        m.records[0].label = "dog"
        #expect(m.fingerprint != f1)
    }

    @Test func licenceNormalisation() {
        let cases: [(String, String)] = [
            ("CC-BY 4.0", "cc-by"), ("cc_by_sa_3.0", "cc-by-sa"), ("CC0 1.0", "cc0"), (" CC0 ", "cc0"), ("CC-BY-NC", "cc-by-nc"),
            ("https://creativecommons.org/licenses/by-nc-sa/4.0/", "cc-by-nc-sa"),
            ("http://creativecommons.org/publicdomain/zero/1.0/legalcode", "cc0"),
            ("https://creativecommons.org/publicdomain/mark/1.0/", "public-domain"), ("Public Domain", "public-domain"),
            ("PD", "public-domain"), ("Apache-2.0", "apache"), ("MIT", "mit"), ("BSD-3-Clause", "bsd-3-clause"),
            ("All rights reserved", "all-rights-reserved"),
        ]
        for (text, expected) in cases { #expect(Licenses.normalize(text) == expected, "\(text)") }
        #expect(Licenses.permissive.allSatisfy { Licenses.normalize($0) == $0 })
        #expect(!Licenses.permissive.contains { $0.contains("nc") || $0.contains("nd") })
    }
}

@Suite struct ClassWeightsTests {
    /// Hand-computed: n = 100, 3 classes; balanced = 100 / (3 · count).
    @Test func balancedAndEffectiveNumber() throws {
        let w = try ClassWeights(classes: ["a", "b", "c"], counts: [10, 30, 60], beta: 0.9)
        let balanced = [100.0 / 30, 100.0 / 90, 100.0 / 180]
        for (x, y) in zip(w.balanced, balanced) { #expect(abs(x - y) < 1e-12) }
        // (1 − 0.9) / (1 − 0.9^n): 0.153534…, 0.104424…, 0.100180…, scaled to sum to 3.
        let effective = [1.2860919313779284, 0.8747406732493587, 0.8391673953727131]
        for (x, y) in zip(w.effectiveNumber, effective) { #expect(abs(x - y) < 1e-12) }
        #expect(abs(w.effectiveNumber.reduce(0, +) - 3) < 1e-12)
        let d = try ClassWeights(classes: ["a", "b", "c"], counts: [10, 30, 60])     // β = 0.999
        for (x, y) in zip(d.effectiveNumber, [1.9900010576695448, 0.6699812972609068, 0.3400176450695483]) { #expect(abs(x - y) < 1e-9) }
    }

    @Test func edgeCases() throws {
        // A class without samples gets 0 and does not count in n_classes: 5 / (2 · count).
        let w = try ClassWeights(classes: ["a", "b", "c"], counts: [4, 0, 1], beta: 0.5)
        #expect(w.balanced == [0.625, 0, 2.5])
        for (x, y) in zip(w.effectiveNumber, [0.6956521739130436, 0.0, 1.3043478260869565]) { #expect(abs(x - y) < 1e-12) }
        // β = 0: every present class weighs 1.
        #expect(try ClassWeights(classes: ["a", "b"], counts: [3, 100], beta: 0).effectiveNumber == [1, 1])
        #expect(throws: ClassWeightsError.invalidBeta(1)) { try ClassWeights(classes: ["a"], counts: [1], beta: 1) }
        #expect(throws: ClassWeightsError.countMismatch(classes: 2, counts: 1)) { try ClassWeights(classes: ["a", "b"], counts: [1]) }
    }

    @Test func saveAndLoad() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let path = dir.appendingPathComponent("class_weights.json").path
        let w = try ClassWeights(classes: ["a/b", "é"], counts: [2, 6])
        try w.save(to: path)
        #expect(try ClassWeights.load(path: path) == w)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        #expect(Set(json?.keys.map { $0 } ?? []) == ["classes", "counts", "balanced", "effective_number", "beta"])
        try Data(#"{"classes": ["a"], "counts": [1, 2], "balanced": [1], "effective_number": [1], "beta": 0.9}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        #expect(throws: ClassWeightsError.self) { try ClassWeights.load(path: path) }
    }
}
