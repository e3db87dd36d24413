import Foundation
import TestSupport

/// Small image datasets for end-to-end runs, made through the product's own `import-idx`:
/// a subset of Fashion-MNIST when Debian's dataset-fashion-mnist is installed (`make test`
/// installs it), else synthetic IDX files with a learnable pattern per class.
enum Fixtures {
    static let fashionDir = "/usr/share/datasets/fashion-mnist"

    /// Imports `train` training and `test` test images into `dir`; returns (train.jsonl, test.jsonl).
    static func dataset(in dir: URL, train: Int, test: Int) throws -> (train: String, test: String) {
        var sources: [(name: String, images: String, labels: String, limit: Int)]
        if FileManager.default.fileExists(atPath: "\(fashionDir)/train-images-idx3-ubyte.gz") {
            sources = [("train", "\(fashionDir)/train-images-idx3-ubyte.gz", "\(fashionDir)/train-labels-idx1-ubyte.gz", train),
                       ("test", "\(fashionDir)/t10k-images-idx3-ubyte.gz", "\(fashionDir)/t10k-labels-idx1-ubyte.gz", test)]
        } else {
            print("Fixtures: \(fashionDir) not installed; using synthetic IDX data")
            sources = []
            for (name, count, seed) in [("train", train, 1), ("test", test, 2)] {
                let (images, labels) = try writeSyntheticIDX(in: dir, name: name, count: count, seed: UInt64(seed))
                sources.append((name, images, labels, count))
            }
        }
        for s in sources {
            let r = try TestSupport.distrainer(["import-idx", "--images", s.images, "--labels", s.labels, "--classes", "fashion-mnist",
                                                "--out", dir.path, "--name", s.name, "--limit", "\(s.limit)"])
            guard r.status == 0 else { throw FixtureError("import-idx failed: \(r.stderr)") }
        }
        return (dir.appendingPathComponent("train.jsonl").path, dir.appendingPathComponent("test.jsonl").path)
    }

    struct FixtureError: Error, CustomStringConvertible { var description: String; init(_ d: String) { description = d } }

    /// 28×28 images: class k has a bright bar at row 2k + 4 over faint noise.
    static func writeSyntheticIDX(in dir: URL, name: String, count: Int, seed: UInt64) throws -> (String, String) {
        var images = Data([0, 0, 8, 3]), labels = Data([0, 0, 8, 1])
        func be32(_ v: Int) -> Data { Data([UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)]) }
        images += be32(count) + be32(28) + be32(28)
        labels += be32(count)
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        func next() -> UInt8 { state = state &* 6364136223846793005 &+ 1442695040888963407; return UInt8(truncatingIfNeeded: state >> 58) }
        for i in 0..<count {
            let k = i % 10
            labels.append(UInt8(k))
            var px = [UInt8](repeating: 0, count: 784)
            for j in 0..<784 { px[j] = next() }
            for c in 0..<28 { px[(2 * k + 4) * 28 + c] = 230; px[(2 * k + 5) * 28 + c] = 200 }
            images.append(contentsOf: px)
        }
        let ip = dir.appendingPathComponent("\(name)-images-idx3-ubyte").path, lp = dir.appendingPathComponent("\(name)-labels-idx1-ubyte").path
        try images.write(to: URL(fileURLWithPath: ip)); try labels.write(to: URL(fileURLWithPath: lp))
        return (ip, lp)
    }

    /// history.jsonl as dictionaries.
    static func history(_ run: URL) throws -> [[String: Any]] {
        let text = try String(contentsOf: run.appendingPathComponent("history.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }
}
