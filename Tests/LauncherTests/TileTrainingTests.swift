import Testing
import Foundation
import Shards
import TestSupport

/// Training on map tiles: a manifest of tagged coordinates, each record's image the tile at its
/// lat/lon, served by the local HTTP server by z/x/y.
@Suite(.serialized) struct TileTrainingTests {
    /// The coordinates of a point inside tile (x, y) at `zoom` (fractions fx, fy of the tile).
    static func position(x: Int, y: Int, zoom: Int, fx: Double, fy: Double) -> (lat: Double, lon: Double) {
        let n = Double(1 << zoom)
        let lon = (Double(x) + fx) / n * 360 - 180
        let lat = atan(sinh(.pi * (1 - 2 * (Double(y) + fy) / n))) * 180 / .pi
        return (lat, lon)
    }

    @Test func trainsOnTilesFromCoordinates() throws {
        guard FaultServer.available else { print("skipped: python3 not found for the test HTTP server"); return }
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let server = try FaultServer()
        defer { server.stop() }
        // An 8×8 block of zoom-18 tiles: "water" tiles dark, "land" tiles bright (checkerboard),
        // so a record's label is only learnable from its tile's pixels.
        let zoom = 18, x0 = 130_970, y0 = 87_160
        var lines: [String] = [], tilePaths: [String] = []
        var state: UInt64 = 7
        for dy in 0..<8 {
            for dx in 0..<8 {
                let land = (dx + dy) % 2 == 0
                var px = [UInt8](repeating: 0, count: 64 * 64)
                for i in px.indices {
                    state = state &* 6364136223846793005 &+ 1442695040888963407
                    px[i] = (land ? 170 : 20) + UInt8(truncatingIfNeeded: state >> 59)   // + 0…31 noise
                }
                let name = "\(zoom)/\(x0 + dx)/\(y0 + dy).png"
                try server.put(name, try PNGCodec.encode(Image(width: 64, height: 64, channels: 1, pixels: px)))
                tilePaths.append("/" + name)
                // Two records per tile, at different points inside it.
                for (fx, fy) in [(0.25, 0.3), (0.7, 0.8)] {
                    let p = Self.position(x: x0 + dx, y: y0 + dy, zoom: zoom, fx: fx, fy: fy)
                    lines.append(#"{"lat": \#(p.lat), "lon": \#(p.lon), "label": "\#(land ? "land" : "water")"}"#)
                }
            }
        }
        lines.insert(#"{"lon": 2.0, "label": "land"}"#, at: 5)          // no lat: line 6 is a bad record
        let manifest = dir.appendingPathComponent("places.jsonl").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: manifest, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("run")
        let template = "http://127.0.0.1:\(server.port)/{z}/{x}/{y}.png"
        let args = ["train", "--train", manifest, "--val", manifest, "--tile-url", template, "--tile-zoom", "\(zoom)",
                    "--model", "refcnn", "--image-size", "28", "--channels", "1", "--epochs", "4", "--batch-size", "16",
                    "--lr", "0.02", "--cache-mem", "16MB", "--skip-bad-records", "--out", run.path, "--quiet"]
        let r = try TestSupport.distrainer(args, timeout: 240)
        #expect(r.status == 0, "\(r.stderr)")

        // The record without lat is listed with its file:line; every tile was fetched exactly once
        // (two records share each tile; later epochs come from the cache).
        let failed = try String(contentsOf: run.appendingPathComponent("failed_samples.jsonl"), encoding: .utf8)
        #expect(failed.contains("places.jsonl:6: missing \\\"lat\\\" for the map tile"), "\(failed)")
        let requests = try server.stats().requests
        #expect(Set(requests.keys) == Set(tilePaths))
        #expect(requests.values.allSatisfy { $0 == 1 }, "\(requests)")
        let history = try Fixtures.history(run)
        #expect(history.count == 4)
        #expect((history.last?["train_acc"] as? Double ?? 0) >= 0.9, "\(history)")
        #expect(history.allSatisfy { $0["skipped"] as? Int == 0 })

        // Without --skip-bad-records the bad record stops the run, naming file:line.
        let strict = try TestSupport.distrainer(Array(args.filter { $0 != "--skip-bad-records" }.dropLast(3))
                                                + ["--out", dir.appendingPathComponent("run2").path, "--quiet"], timeout: 60)
        #expect(strict.status != 0)
        #expect(strict.stderr.contains("places.jsonl:6: missing \"lat\" for the map tile"), "\(strict.stderr)")
    }
}
