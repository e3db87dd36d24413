import Foundation
import Shards
import Testing
import TestSupport

@Suite struct ManifestTests {
    /// Writes `text` as `name` in a fresh folder; returns (folder, manifest path).
    func manifest(_ text: String, name: String = "train.jsonl") throws -> (URL, String) {
        let dir = try TestSupport.makeTempDir()
        let path = dir.appendingPathComponent(name).path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return (dir, path)
    }

    @Test func goodLinesAndPathResolution() throws {
        let text = """
            {"id": "a", "image": "imgs/a.png", "label": "cat"}

            {"image": "/abs/b.png", "label": 3, "extra": {"nested": [1, 2, null]}}
               \t
            {"label": "dog", "image": "c d/é\\u00e9.png"}
            """
        let (dir, path) = try manifest(text)
        defer { TestSupport.removeTree(dir) }
        let m = try Manifest.load(path: path)
        #expect(m.path == path)
        #expect(m.records.count == 3)
        #expect(m.records[0] == ManifestRecord(image: "imgs/a.png", path: dir.path + "/imgs/a.png", label: "cat", line: 1,
                                               metadata: RecordMetadata(id: "a"),
                                               raw: #"{"id": "a", "image": "imgs/a.png", "label": "cat"}"#))
        #expect(m.records[1] == ManifestRecord(image: "/abs/b.png", path: "/abs/b.png", label: "3", line: 3,
                                               raw: #"{"image": "/abs/b.png", "label": 3, "extra": {"nested": [1, 2, null]}}"#))
        #expect(m.records[2].image == "c d/éé.png" && m.records[2].path == dir.path + "/c d/éé.png")
        #expect(m.records[2].label == "dog" && m.records[2].line == 5)
        #expect(m.rejected.isEmpty && m.rejectedCounts.isEmpty)
    }

    /// Manifests of images to predict: with `labelRequired` off a missing or null label reads as
    /// "", while a label that is present is still checked.
    @Test func optionalLabels() throws {
        let (dir, path) = try manifest("""
            {"image": "a.png"}
            {"image": "b.png", "label": null}
            {"image": "c.png", "label": 7}
            """)
        defer { TestSupport.removeTree(dir) }
        var o = ManifestOptions()
        #expect(throws: ManifestError.self) { try Manifest.load(path: path, options: o) }
        o.labelRequired = false
        #expect(try Manifest.load(path: path, options: o).records.map(\.label) == ["", "", "7"])
        let (dir2, bad) = try manifest(#"{"image": "a.png", "label": ""}"#)
        defer { TestSupport.removeTree(dir2) }
        #expect(throws: ManifestError.self) { try Manifest.load(path: bad, options: o) }
    }

    @Test func relativeManifestPath() throws {
        let (dir, _) = try manifest(#"{"image": "x.png", "label": "a"}"#, name: "m.jsonl")
        defer { TestSupport.removeTree(dir) }
        let cwd = FileManager.default.currentDirectoryPath
        #expect(FileManager.default.changeCurrentDirectoryPath(dir.deletingLastPathComponent().path))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        let rel = dir.lastPathComponent + "/m.jsonl"
        let m = try Manifest.load(path: rel)
        #expect(m.records[0].path == dir.lastPathComponent + "/x.png")
    }

    @Test func customFieldsCRLFAndBOM() throws {
        let text = "\u{FEFF}{\"file\": \"a.png\", \"cls\": \"x\", \"image\": 5}\r\n{\"file\": \"b.png\", \"cls\": 7}\r\n"
        let (dir, path) = try manifest(text)
        defer { TestSupport.removeTree(dir) }
        let m = try Manifest.load(path: path, imageField: "file", labelField: "cls")
        #expect(m.records.map(\.image) == ["a.png", "b.png"])
        #expect(m.records.map(\.label) == ["x", "7"])
    }

    static let badCases: [(line: String, reason: String)] = [
        ("not json at all", "not JSON"),
        (#"{"image": "a.png", "label": "x""#, "not JSON"),
        (#"{"image": "a.png", "label": "x"} trailing"#, "not JSON"),
        (#"["image", "label"]"#, "not a JSON object"),
        ("42", "not a JSON object"),
        (#"{"label": "x"}"#, #"missing field "image""#),
        (#"{"image": "", "label": "x"}"#, #"empty "image""#),
        (#"{"image": 12, "label": "x"}"#, #""image" is not a string"#),
        (#"{"image": null, "label": "x"}"#, #""image" is not a string"#),
        (#"{"image": "a.png"}"#, #"missing field "label""#),
        (#"{"image": "a.png", "label": ""}"#, #"empty "label""#),
        (#"{"image": "a.png", "label": 1.5}"#, #""label" is not a string or integer"#),
        (#"{"image": "a.png", "label": true}"#, #""label" is not a string or integer"#),
        (#"{"image": "a.png", "label": ["x"]}"#, #""label" is not a string or integer"#),
    ]

    @Test(arguments: badCases)
    func badLineNamesFileAndLine(line: String, reason: String) throws {
        let good = #"{"image": "ok.png", "label": "x"}"#
        let (dir, path) = try manifest([good, "", good, line, good].joined(separator: "\n"))
        defer { TestSupport.removeTree(dir) }
        do {
            _ = try Manifest.load(path: path)
            Issue.record("expected an error for \(line)")
        } catch let e as ManifestError {
            #expect(e.file == path && e.line == 4 && e.reason == reason)
            #expect(e.description.hasPrefix("\(path):4: \(reason)"), "\(e)")
        }
    }

    @Test func errorTextExample() {
        let e = ManifestError(file: "train.jsonl", line: 17, reason: #"missing field "label""#)
        #expect(e.description == #"train.jsonl:17: missing field "label""#)
        let j = ManifestError(file: "t.jsonl", line: 2, reason: "not JSON", detail: "unexpected character 'x' at column 1")
        #expect(j.description == "t.jsonl:2: not JSON: unexpected character 'x' at column 1")
    }

    @Test func skipBadCountsPerReason() throws {
        var lines = [#"{"image": "0.png", "label": "a"}"#]
        for (bad, _) in Self.badCases { lines.append(bad); lines.append(#"{"image": "n.png", "label": "b"}"#) }
        let (dir, path) = try manifest(lines.joined(separator: "\n") + "\n")
        defer { TestSupport.removeTree(dir) }
        let m = try Manifest.load(path: path, skipBad: true)
        #expect(m.records.count == 1 + Self.badCases.count)
        #expect(m.rejected.count == Self.badCases.count)
        var expected: [String: Int] = [:]
        for (_, reason) in Self.badCases { expected[reason, default: 0] += 1 }
        #expect(m.rejectedCounts == expected)
        #expect(m.rejected.map(\.line) == Self.badCases.indices.map { 2 + 2 * $0 })
        for (r, c) in zip(m.rejected, Self.badCases) { #expect(r.reason.hasPrefix(c.reason)) }
        #expect(m.rejected[0].reason.contains("column"))  // the parser's detail is kept
    }

    @Test func missingManifest() {
        let path = "/nonexistent-\(UUID().uuidString)/train.jsonl"
        #expect(throws: ManifestError.self) { try Manifest.load(path: path) }
        do { _ = try Manifest.load(path: path) } catch {
            #expect("\(error)".contains(path) && "\(error)".contains("No such file"))
        }
    }

    @Test func missingImageIsReportedWithItsPath() throws {
        let (dir, path) = try manifest(#"{"image": "gone/x.png", "label": "a"}"#)
        defer { TestSupport.removeTree(dir) }
        let rec = try Manifest.load(path: path).records[0]
        do {
            _ = try ImageFile.load(path: rec.path, channels: 1)
            Issue.record("expected an error")
        } catch let e as ImageError {
            #expect(e == .io(source: dir.path + "/gone/x.png", errno: ENOENT))
            #expect(e.description.contains(dir.path + "/gone/x.png"))
        }
    }

    @Test func longLinesAndChunkBoundaries() throws {
        // > 1 MiB in total (the reader's chunk) and one line longer than a chunk.
        var text = ""
        for i in 0..<30_000 { text += "{\"image\": \"img/\(i).png\", \"label\": \"c\(i % 7)\"}\n" }
        let big = String(repeating: "x", count: 2_500_000)
        text += "{\"image\": \"big.png\", \"label\": \"\(big)\"}\n"
        text += "{\"image\": \"last.png\", \"label\": \"end\"}"  // no trailing newline
        let (dir, path) = try manifest(text)
        defer { TestSupport.removeTree(dir) }
        let m = try Manifest.load(path: path)
        #expect(m.records.count == 30_002)
        #expect(m.records[12_345].image == "img/12345.png" && m.records[12_345].label == "c\(12_345 % 7)")
        #expect(m.records[12_345].line == 12_346)
        #expect(m.records[30_000].label.count == 2_500_000)
        #expect(m.records[30_001].label == "end" && m.records[30_001].line == 30_002)
    }

    @Test func jsonStringsAndEscapes() throws {
        let text = #"""
            {"image": "a\"b\\c\/d\n.png", "label": "\ud83d\ude00 \u00e9"}
            {"image": "x.png", "label": "\ud83d"}
            {"image": "x.png", "label": "bad \q escape"}
            {"image": "x.png", "label": 01}
            {"image": "x.png", "label": -0}
            """#
        let (dir, path) = try manifest(text)
        defer { TestSupport.removeTree(dir) }
        let m = try Manifest.load(path: path, skipBad: true)
        #expect(m.records.count == 2)
        #expect(m.records[0].image == "a\"b\\c/d\n.png" && m.records[0].label == "😀 é")
        #expect(m.records[1].label == "0")
        #expect(m.rejectedCounts == ["not JSON": 3])
    }

    @Test func invalidUTF8IsNotJSON() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let path = dir.appendingPathComponent("m.jsonl").path
        let bytes = Array(#"{"image": "a"#.utf8) + [0xFF, 0xFE] + Array(#".png", "label": "x"}"#.utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(throws: ManifestError(file: path, line: 1, reason: "not JSON", detail: "invalid UTF-8 in string at column 12")) {
            try Manifest.load(path: path)
        }
    }
}

@Suite struct ClassListTests {
    @Test func sortedDistinctLabels() {
        let c = ClassList(labels: ["dog", "cat", "Zebra", "dog", "ant", "cat", "éclair", "B"])
        #expect(c.names == ["B", "Zebra", "ant", "cat", "dog", "éclair"])  // code-point order, like Python
        #expect(c.index(of: "cat") == 3 && c.index(of: "B") == 0 && c.index(of: "cow") == nil)
        #expect(c.count == 6)
        #expect(c == ClassList(names: ["B", "Zebra", "ant", "cat", "dog", "éclair"]))
        var d = c
        d.names = ["x", "y"]
        #expect(d.index(of: "y") == 1 && d.index(of: "cat") == nil)
    }

    @Test func saveLoadRoundTrip() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let path = dir.appendingPathComponent("classes.json").path
        let c = ClassList(names: IDXImporter.fashionMNISTClasses + ["quote \" back \\ tab \t", "日本"])
        try c.save(to: path)
        #expect(try ClassList.load(path: path) == c)
        let parsed = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String]
        #expect(parsed == c.names)
        try ClassList(names: []).save(to: path)
        #expect(try ClassList.load(path: path).names.isEmpty)
    }

    @Test func loadErrors() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let path = dir.appendingPathComponent("classes.json").path
        for (text, fragment) in [(#"{"a": 1}"#, "expected a JSON array"), (#"["a", 2]"#, "entry 1"),
                                 (#"["a", "a"]"#, "duplicate"), (#"["a", ""]"#, "empty"), ("[\"a\",", "not JSON")] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            do {
                _ = try ClassList.load(path: path)
                Issue.record("expected an error for \(text)")
            } catch let e as ClassListError {
                #expect(e.description.contains(path) && e.description.contains(fragment), "\(e)")
            }
        }
        #expect(throws: ClassListError.self) { try ClassList.load(path: dir.appendingPathComponent("none.json").path) }
    }
}
