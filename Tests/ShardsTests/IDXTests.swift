import Foundation
import Shards
import Testing
import TestSupport

/// A small synthetic IDX pair: `count` images of rows×cols with labels `i % classes`.
struct SyntheticIDX {
    let count: Int, rows: Int, cols: Int, classes: Int
    var pixels: [UInt8] { TestFiles.bytes(count * rows * cols, seed: 42) }
    var labels: [UInt8] { (0..<count).map { UInt8(($0 * 7 + 3) % classes) } }

    var imagesFile: [UInt8] { TestFiles.idx(magic: 0x803, dims: [count, rows, cols], data: pixels) }
    var labelsFile: [UInt8] { TestFiles.idx(magic: 0x801, dims: [count], data: labels) }

    /// Writes images/labels files (gzipped or raw) into `dir`; returns their paths.
    func write(to dir: URL, gzip: Bool) throws -> (images: String, labels: String) {
        let ext = gzip ? ".gz" : ""
        let i = dir.appendingPathComponent("images-idx3-ubyte\(ext)"), l = dir.appendingPathComponent("labels-idx1-ubyte\(ext)")
        try TestFiles.write(gzip ? TestFiles.gzipStored(imagesFile) : imagesFile, to: i)
        try TestFiles.write(gzip ? TestFiles.gzipStored(labelsFile) : labelsFile, to: l)
        return (i.path, l.path)
    }
}

@Suite struct IDXTests {
    let data = SyntheticIDX(count: 23, rows: 3, cols: 5, classes: 4)

    @Test(arguments: [false, true])
    func readBack(gzip: Bool) throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let (images, labels) = try data.write(to: dir, gzip: gzip)
        let r = try IDX.readImages(path: images)
        #expect(r.count == 23 && r.rows == 3 && r.cols == 5)
        #expect(r.pixels == data.pixels)
        #expect(try IDX.readLabels(path: labels) == data.labels)
    }

    /// Writes `bytes` and expects `read` to throw an IDXError naming the file and containing `fragment`.
    func expectIDXError(_ bytes: [UInt8], _ fragment: String, labels: Bool = false,
                        sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let path = dir.appendingPathComponent("bad.idx").path
        try TestFiles.write(bytes, to: URL(fileURLWithPath: path))
        do {
            if labels { _ = try IDX.readLabels(path: path) } else { _ = try IDX.readImages(path: path) }
            Issue.record("expected an error containing \(fragment)", sourceLocation: sourceLocation)
        } catch let e as IDXError {
            #expect(e.path == path, sourceLocation: sourceLocation)
            #expect(e.description.contains(path) && e.description.contains(fragment), "\(e)", sourceLocation: sourceLocation)
        }
    }

    @Test func badFiles() throws {
        let images = data.imagesFile, labels = data.labelsFile
        try expectIDXError(labels, "bad magic number 0x00000801, expected 0x00000803")   // labels given as images
        try expectIDXError(labels, "labels file")
        try expectIDXError(images, "images file", labels: true)
        try expectIDXError(Array("P5\n28 28\n255\n".utf8) + [UInt8](repeating: 0, count: 40), "not an IDX file")
        try expectIDXError([], "empty file")
        try expectIDXError(Array(images.prefix(10)), "truncated header")
        try expectIDXError(Array(images.dropLast(7)), "truncated")
        try expectIDXError(Array(images.dropLast(7)), "has only \(23 * 15 - 7)")
        try expectIDXError(images + [1, 2, 3], "trailing data")
        try expectIDXError(TestFiles.idx(magic: 0x803, dims: [0, 28, 28], data: []), "dimension 0 is 0")
        try expectIDXError(TestFiles.idx(magic: 0x803, dims: [0x7FFF_FFFF, 0xFFFF, 0xFFFF], data: []), "implausibly large")
        // A header that claims 60000×28×28 on a tiny file fails without allocating its claim.
        try expectIDXError(TestFiles.idx(magic: 0x803, dims: [60_000, 28, 28], data: [1, 2, 3]), "has only 3")

        // gzip damage: a cut stream and a bad CRC-32 trailer.
        let gz = TestFiles.gzipStored(images)
        try expectIDXError(Array(gz.dropLast(20)), "truncated")
        var badCRC = gz
        badCRC[badCRC.count - 6] ^= 0xFF
        try expectIDXError(badCRC, "gzip error")

        #expect(throws: IDXError.self) { try IDX.readLabels(path: "/nonexistent/labels.gz") }
        do { _ = try IDX.readLabels(path: "/nonexistent/labels.gz") } catch {
            #expect("\(error)".contains("/nonexistent/labels.gz") && "\(error)".contains("No such file"))
        }
    }
}

@Suite struct IDXImporterTests {
    let data = SyntheticIDX(count: 23, rows: 3, cols: 5, classes: 4)
    let classes = ["zero", "one/two", "quote \" name", "três"]

    /// Checks `outDir/name.jsonl` against the synthetic data: ids, labels, relative paths and
    /// the decoded pixels of every PNG.
    func verify(outDir: URL, name: String, count: Int) throws {
        let manifestPath = outDir.appendingPathComponent("\(name).jsonl").path
        let text = try String(contentsOfFile: manifestPath, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == count + 1 && lines.last == "")
        let pixels = data.pixels, labels = data.labels
        let manifest = try Manifest.load(path: manifestPath)
        #expect(manifest.records.count == count)
        for i in 0..<count {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(lines[i].utf8)) as? [String: Any])
            let padded = String(format: "%05d", i)
            #expect(obj["id"] as? String == "\(name)-\(padded)")
            #expect(obj["image"] as? String == "\(name)/0/\(padded).png")
            #expect(obj["label"] as? String == classes[Int(labels[i])])
            #expect(obj["label_id"] as? Int == Int(labels[i]))
            #expect(obj.count == 4)
            let rec = manifest.records[i]
            #expect(rec.path == outDir.path + "/\(name)/0/\(padded).png")
            let img = try ImageFile.load(path: rec.path, channels: 1)
            #expect(img.width == data.cols && img.height == data.rows)
            let start = i * data.rows * data.cols
            #expect(img.pixels == Array(pixels[start..<(start + data.rows * data.cols)]))
        }
    }

    @Test(arguments: [false, true])
    func importAll(gzip: Bool) throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let (images, labels) = try data.write(to: dir, gzip: gzip)
        let out = dir.appendingPathComponent("out/nested")
        let n = try IDXImporter.run(images: images, labels: labels, classes: classes, outDir: out.path, name: "train", limit: nil)
        #expect(n == 23)
        try verify(outDir: out, name: "train", count: 23)
    }

    @Test func limitAndName() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let (images, labels) = try data.write(to: dir, gzip: true)
        #expect(try IDXImporter.run(images: images, labels: labels, classes: classes, outDir: dir.path, name: "val", limit: 7) == 7)
        try verify(outDir: dir, name: "val", count: 7)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/val/0/00007.png"))
        #expect(try IDXImporter.run(images: images, labels: labels, classes: classes, outDir: dir.path, name: "all", limit: 1000) == 23)
        #expect(try IDXImporter.run(images: images, labels: labels, classes: classes, outDir: dir.path, name: "none", limit: 0) == 0)
        #expect(try String(contentsOfFile: dir.path + "/none.jsonl", encoding: .utf8) == "")
    }

    @Test func importErrors() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let (images, labels) = try data.write(to: dir, gzip: false)
        func expectError(_ fragment: String, classes: [String]? = nil, images img: String? = nil, labels lbl: String? = nil,
                         name: String = "train", limit: Int? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try IDXImporter.run(images: img ?? images, labels: lbl ?? labels, classes: classes ?? self.classes,
                                        outDir: dir.path + "/out", name: name, limit: limit)
                Issue.record("expected an error containing \(fragment)", sourceLocation: sourceLocation)
            } catch {
                #expect("\(error)".contains(fragment), "\(error)", sourceLocation: sourceLocation)
            }
        }
        expectError("out of range for 3 classes", classes: ["a", "b", "c"])
        expectError("duplicate class names", classes: ["a", "b", "a", "d"])
        expectError("no class names", classes: [])
        expectError("invalid dataset name", name: "a/b")
        expectError("limit must be >= 0", limit: -1)
        expectError("bad magic number", images: labels)
        // Count mismatch between the two files.
        let short = dir.appendingPathComponent("short-labels").path
        try TestFiles.write(TestFiles.idx(magic: 0x801, dims: [5], data: [0, 1, 2, 3, 0]), to: URL(fileURLWithPath: short))
        expectError("has 23 images but \(short) has 5 labels", labels: short)
        // Out-of-range labels beyond the limit are not looked at.
        #expect(try IDXImporter.run(images: images, labels: labels, classes: ["a", "b", "c", "d"], outDir: dir.path + "/ok",
                                    name: "t", limit: 2) == 2)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/out/train.jsonl"))
    }

    @Test func fashionMNISTFirst100() throws {
        let base = "/usr/share/datasets/fashion-mnist"
        let images = base + "/t10k-images-idx3-ubyte.gz", labels = base + "/t10k-labels-idx1-ubyte.gz"
        guard FileManager.default.fileExists(atPath: images), FileManager.default.fileExists(atPath: labels) else {
            print("skipping fashionMNISTFirst100: \(base) is not installed (apt-get install dataset-fashion-mnist)")
            return
        }
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let n = try IDXImporter.run(images: images, labels: labels, classes: IDXImporter.fashionMNISTClasses,
                                    outDir: dir.path, name: "test", limit: 100)
        #expect(n == 100)
        let m = try Manifest.load(path: dir.path + "/test.jsonl")
        #expect(m.records.count == 100)
        // Known facts of the t10k set: first labels 9, 2, 1, 1, 6; image 0 sums to 33456 (max 255);
        // image 99 is a Pullover summing to 93257; 6 Ankle boots among the first 100.
        #expect(m.records.prefix(5).map(\.label) == ["Ankle boot", "Pullover", "Trouser", "Trouser", "Shirt"])
        let first = try ImageFile.load(path: m.records[0].path, channels: 1)
        #expect(first.width == 28 && first.height == 28)
        #expect(first.pixels.reduce(0) { $0 + Int($1) } == 33456 && first.pixels.max() == 255)
        let last = try ImageFile.load(path: m.records[99].path, channels: 1)
        #expect(m.records[99].label == "Pullover" && last.pixels.reduce(0) { $0 + Int($1) } == 93257)
        #expect(m.records.filter { $0.label == "Ankle boot" }.count == 6)
        #expect(ClassList(labels: m.records.map(\.label)).count == 10)
    }
}

@Suite struct ImportIDXCommandTests {
    @Test func runsAsChildProcess() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let data = SyntheticIDX(count: 30, rows: 28, cols: 28, classes: 10)
        let (images, labels) = try data.write(to: dir, gzip: true)
        let out = dir.appendingPathComponent("data").path
        let r = try TestSupport.distrainer(["import-idx", "--images", images, "--labels", labels,
                                            "--classes", "mnist", "--out", out, "--name", "train", "--limit", "25"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("25 images") && r.stdout.contains(out + "/train.jsonl"), "\(r.stdout)")
        let m = try Manifest.load(path: out + "/train.jsonl")
        #expect(m.records.count == 25)
        #expect(m.records.map(\.label) == data.labels.prefix(25).map { String($0) })
        let img = try ImageFile.load(path: m.records[24].path, channels: 1)
        #expect(img.pixels == Array(data.pixels[(24 * 784)..<(25 * 784)]))

        // A comma-separated class list.
        let names = (0..<10).map { "class \($0)" }.joined(separator: ",")
        let r2 = try TestSupport.distrainer(["import-idx", "--images", images, "--labels", labels,
                                             "--classes", names, "--out", out, "--name", "named"])
        #expect(r2.status == 0, "stderr: \(r2.stderr)")
        #expect(try Manifest.load(path: out + "/named.jsonl").records[0].label == "class \(data.labels[0])")
    }

    @Test func errorsExitNonZero() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let data = SyntheticIDX(count: 5, rows: 2, cols: 2, classes: 3)
        let (images, labels) = try data.write(to: dir, gzip: false)
        let out = dir.appendingPathComponent("data").path
        let missing = dir.appendingPathComponent("missing.gz").path
        let cases: [([String], String)] = [
            (["--images", missing, "--labels", labels, "--classes", "a,b,c", "--out", out], missing),
            (["--images", labels, "--labels", labels, "--classes", "a,b,c", "--out", out], "bad magic number"),
            (["--images", images, "--labels", labels, "--classes", "a,b", "--out", out], "out of range"),
            (["--images", images, "--labels", labels, "--classes", "a,,c", "--out", out], "empty class name"),
            (["--images", images, "--labels", labels, "--classes", "a,b,c", "--out", out, "--limit", "-2"], "--limit"),
            (["--images", images, "--labels", labels, "--out", out], "--classes"),
        ]
        for (args, fragment) in cases {
            let r = try TestSupport.distrainer(["import-idx"] + args)
            #expect(r.status != 0, "\(args)")
            #expect(r.stderr.contains(fragment), "\(args): \(r.stderr)")
        }
    }
}
