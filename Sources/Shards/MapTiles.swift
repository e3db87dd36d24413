import Foundation

/// Map tiles as a manifest's images: each record's image URL is built from its `lat`/`lon`
/// with the slippy-map tile numbering (Web Mercator, as OpenStreetMap and most tile servers).
///
///     let tiles = try MapTiles(template: "https://tile.example.org/{z}/{x}/{y}.png", zoom: 18)
///     tiles.url(lat: 51.5074, lon: -0.1278)     // "https://tile.example.org/18/130978/87169.png"
///
/// The template must be an `http(s)://` URL holding `{z}`, `{x}` and `{y}` (each at least once).
public struct MapTiles: Sendable, Equatable, Codable {
    public var template: String
    public var zoom: Int

    /// Highest zoom accepted (tile numbers stay well inside `Int`; real servers stop near 22).
    public static let maxZoom = 30
    /// Web Mercator's latitude limit: latitudes beyond it are clamped to it.
    public static let maxLatitude = 85.0511287798066

    /// A template that cannot work.
    public struct Problem: Error, CustomStringConvertible, Equatable, Sendable {
        public var description: String
    }

    public init(template: String, zoom: Int) throws(Problem) {
        guard (0...Self.maxZoom).contains(zoom) else {
            throw Problem(description: "tile zoom must be between 0 and \(Self.maxZoom), got \(zoom)")
        }
        for key in ["{z}", "{x}", "{y}"] where !template.contains(key) {
            throw Problem(description: "tile URL \"\(template)\" has no \(key) (expected e.g. http://HOST/{z}/{x}/{y}.png)")
        }
        self.template = template
        self.zoom = zoom
        // The template must give a valid remote URL once filled in.
        switch ImageReference.parse(fill(x: 0, y: 0)) {
        case .success(.remote): break
        case .success: throw Problem(description: "tile URL \"\(template)\" must be an http:// or https:// URL")
        case let .failure(p): throw Problem(description: "tile URL \"\(template)\": \(p.reason): \(p.detail)")
        }
    }

    /// The tile holding (`lat`, `lon`) in degrees at `zoom`: x = ⌊(lon + 180)/360 · 2^z⌋,
    /// y = ⌊(1 − ln(tan φ + sec φ)/π)/2 · 2^z⌋, with φ clamped to ±`maxLatitude` and both
    /// numbers to [0, 2^z − 1] (so lon = 180 is the last column, the poles the first/last row).
    public static func tile(lat: Double, lon: Double, zoom: Int) -> (x: Int, y: Int) {
        let n = Double(1 << zoom)
        let phi = min(max(lat, -maxLatitude), maxLatitude) * .pi / 180
        let fx = (lon + 180) / 360 * n
        let fy = (1 - log(tan(phi) + 1 / cos(phi)) / .pi) / 2 * n
        let last = (1 << zoom) - 1
        return (min(max(Int(fx.rounded(.down)), 0), last), min(max(Int(fy.rounded(.down)), 0), last))
    }

    /// The tile URL for a position.
    public func url(lat: Double, lon: Double) -> String {
        let t = Self.tile(lat: lat, lon: lon, zoom: zoom)
        return fill(x: t.x, y: t.y)
    }

    func fill(x: Int, y: Int) -> String {
        template.replacingOccurrences(of: "{z}", with: "\(zoom)")
            .replacingOccurrences(of: "{x}", with: "\(x)")
            .replacingOccurrences(of: "{y}", with: "\(y)")
    }
}
