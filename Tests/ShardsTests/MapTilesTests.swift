import Testing
import Foundation
import TestSupport
@testable import Shards

@Suite struct MapTilesTests {
    /// Tile numbers from the OpenStreetMap wiki's reference formula ("Slippy map tilenames",
    /// Python `deg2num`), computed independently for these places.
    @Test(arguments: [
        (51.5074, -0.1278, 18, 130978, 87169),      // London
        (52.5200, 13.4050, 18, 140833, 85971),      // Berlin
        (48.8584, 2.2945, 16, 33185, 22545),        // Eiffel tower
        (-33.8568, 151.2153, 18, 241183, 157300),   // Sydney opera house
        (40.6892, -74.0445, 12, 1205, 1540),        // Statue of Liberty
        (47.3769, 8.5417, 18, 137291, 91799),       // Zürich
        (0.0, 0.0, 1, 1, 1),
        (0.0001, -0.0001, 1, 0, 0),
    ])
    func knownTiles(lat: Double, lon: Double, zoom: Int, x: Int, y: Int) {
        let t = MapTiles.tile(lat: lat, lon: lon, zoom: zoom)
        #expect(t.x == x && t.y == y, "\(lat),\(lon) at z\(zoom): got \(t)")
    }

    @Test func edgesAreClamped() {
        #expect(MapTiles.tile(lat: 0, lon: 0, zoom: 0) == (0, 0))
        // Latitudes beyond Web Mercator's limit (and the poles) land in the first/last row.
        #expect(MapTiles.tile(lat: 90, lon: -180, zoom: 4) == (0, 0))
        #expect(MapTiles.tile(lat: 85.0511, lon: 179.9999, zoom: 4) == (15, 0))
        #expect(MapTiles.tile(lat: -90, lon: 180, zoom: 4) == (15, 15))
        #expect(MapTiles.tile(lat: -85.0511, lon: -180, zoom: 4) == (0, 15))
        let z30 = MapTiles.tile(lat: -89, lon: 180, zoom: 30)
        #expect(z30.x == (1 << 30) - 1 && z30.y == (1 << 30) - 1)
    }

    @Test func urlsAndTemplateProblems() throws {
        let t = try MapTiles(template: "http://tiles.local:8080/{z}/{x}/{y}.png?k={z}", zoom: 18)
        #expect(t.url(lat: 51.5074, lon: -0.1278) == "http://tiles.local:8080/18/130978/87169.png?k=18")
        #expect(throws: MapTiles.Problem.self) { try MapTiles(template: "http://h/{z}/{x}.png", zoom: 3) }
        #expect(throws: MapTiles.Problem.self) { try MapTiles(template: "http://h/{z}/{x}/{y}.png", zoom: 31) }
        #expect(throws: MapTiles.Problem.self) { try MapTiles(template: "/tiles/{z}/{x}/{y}.png", zoom: 3) }
        #expect(throws: MapTiles.Problem.self) { try MapTiles(template: "ftp://h/{z}/{x}/{y}.png", zoom: 3) }
        #expect(throws: MapTiles.Problem.self) { try MapTiles(template: "http:///{z}/{x}/{y}.png", zoom: 3) }
    }

    @Test func manifestRecordsBecomeTileURLs() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let path = dir.appendingPathComponent("m.jsonl").path
        try """
        {"lat": 51.5074, "lon": -0.1278, "label": "city"}
        {"lat": 52.52, "lon": 13.405, "label": "city", "image": "ignored.png"}
        {"lon": 13.405, "label": "nowhere"}
        {"lat": 52.52, "lon": null, "label": "nowhere"}
        {"lat": 95, "lon": 1, "label": "nowhere"}

        """.write(toFile: path, atomically: true, encoding: .utf8)
        let tiles = try MapTiles(template: "http://127.0.0.1:9/{z}/{x}/{y}.png", zoom: 18)
        let m = try Manifest.load(path: path, options: ManifestOptions(onBadRecord: .skip, tiles: tiles))
        #expect(m.records.map(\.image) == ["http://127.0.0.1:9/18/130978/87169.png", "http://127.0.0.1:9/18/140833/85971.png"])
        #expect(m.records.map(\.path) == m.records.map(\.image))
        #expect(m.records.allSatisfy { $0.isRemote })
        #expect(m.rejected.map(\.line) == [3, 4, 5])
        #expect(m.rejected[0].reason.hasPrefix("missing \"lat\" for the map tile"))
        #expect(m.rejected[1].reason.hasPrefix("missing \"lon\" for the map tile"))
        #expect(m.rejected[2].reason.hasPrefix("\"lat\" out of range"))
        // Without --skip-bad-records the first bad record stops the load, naming file:line.
        #expect(throws: ManifestError(file: path, line: 3, reason: "missing \"lat\" for the map tile",
                                      detail: "--tile-url builds the image from lat/lon")) {
            try Manifest.load(path: path, options: ManifestOptions(tiles: tiles))
        }
    }
}
