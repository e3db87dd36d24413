import Foundation
import Shards
import Testing
import TestSupport

/// Timings, run only on request:
///
///     DISTRAINER_BENCH=1 swift test -c release --filter ShardsBench
@Suite(.enabled(if: ProcessInfo.processInfo.environment["DISTRAINER_BENCH"] == "1"))
struct ShardsBench {
    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let t = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
    }

    @Test func manifestLoad60k() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let classes = IDXImporter.fashionMNISTClasses
        var text = ""
        for i in 0..<60_000 {
            let y = (i * 7) % 10
            text += "{\"id\": \"train-\(String(format: "%05d", i))\", \"image\": \"train/\(i / 10_000)/\(String(format: "%05d", i)).png\", "
            text += "\"label\": \"\(classes[y])\", \"label_id\": \(y)}\n"
        }
        let path = dir.appendingPathComponent("train.jsonl").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        var best = Double.infinity
        for _ in 0..<5 {
            var m: Manifest?
            best = min(best, try seconds { m = try Manifest.load(path: path) })
            #expect(m?.records.count == 60_000)
        }
        // For comparison: JSONSerialization on every line.
        let lines = text.split(separator: "\n")
        let js = try seconds { for l in lines { _ = try JSONSerialization.jsonObject(with: Data(l.utf8)) } }
        print("BENCH manifest load 60,000 lines (\(text.utf8.count / 1024) KiB): \(String(format: "%.1f", best * 1000)) ms; "
              + "JSONSerialization alone: \(String(format: "%.1f", js * 1000)) ms")
    }

    @Test func pngDecode28x28() throws {
        let img = Image(width: 28, height: 28, channels: 1, pixels: TestFiles.bytes(784, seed: 1).map { $0 & 0xF0 })
        let png = try PNGCodec.encode(img)
        let n = 20_000
        var best = Double.infinity
        for _ in 0..<3 {
            best = min(best, try seconds { for _ in 0..<n { _ = try PNGCodec.decode(png, channels: 1, source: "b") } })
        }
        let enc = try seconds { for _ in 0..<n { _ = try PNGCodec.encode(img) } }
        print("BENCH PNG decode 28x28 gray (\(png.count) bytes): \(String(format: "%.2f", best / Double(n) * 1e6)) µs; "
              + "encode: \(String(format: "%.2f", enc / Double(n) * 1e6)) µs")
    }

    @Test func resizeNormalize() throws {
        let small = Image(width: 28, height: 28, channels: 1, pixels: TestFiles.bytes(784, seed: 2))
        let big = Image(width: 500, height: 375, channels: 3, pixels: TestFiles.bytes(500 * 375 * 3, seed: 3))
        var out = [Float](repeating: 0, count: 3 * 224 * 224)
        let n = 20_000
        let t1 = seconds {
            out.withUnsafeMutableBufferPointer { o in
                for _ in 0..<n { Preprocess.resizeNormalize(small, size: 32, mean: [0.286], std: [0.353], into: o.baseAddress!) }
            }
        }
        let m = 100
        let t2 = seconds {
            out.withUnsafeMutableBufferPointer { o in
                for _ in 0..<m { Preprocess.resizeNormalize(big, size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], into: o.baseAddress!) }
            }
        }
        print("BENCH resizeNormalize 28x28→32 gray: \(String(format: "%.2f", t1 / Double(n) * 1e6)) µs; "
              + "500x375 RGB→224: \(String(format: "%.0f", t2 / Double(m) * 1e6)) µs")
    }
}
