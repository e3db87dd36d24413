/// How a record's metadata becomes the fusion model's metadata vector; fitted on the training
/// split and saved with the model (in `ModelSpec.fusion`, so in every checkpoint).
///
/// Layout of the vector (`width` floats):
///
///     [0] (lat − latMean) / latStd        0 when lat or lon is missing
///     [1] (lon − lonMean) / lonStd        0 when lat or lon is missing
///     [2] missing flag                    1 when lat or lon is missing, else 0
///     [3 …] one-hot `source` over `sources` + one "unknown" slot (missing or unseen source);
///           absent when the training split has no `source` at all
public struct MetadataEncoding: Codable, Equatable, Sendable {
    public var latMean: Float, latStd: Float
    public var lonMean: Float, lonStd: Float
    /// The `source` values of the training split, sorted (empty: no source features).
    public var sources: [String]

    public init(latMean: Float, latStd: Float, lonMean: Float, lonStd: Float, sources: [String]) {
        self.latMean = latMean; self.latStd = latStd; self.lonMean = lonMean; self.lonStd = lonStd; self.sources = sources
    }

    public var width: Int { 3 + (sources.isEmpty ? 0 : sources.count + 1) }

    /// Mean and (population) standard deviation of the present coordinates; a constant
    /// coordinate gets std 1. Returns nil when no record has both lat and lon.
    public static func fit(latitudes: [Double?], longitudes: [Double?], sources: [String?]) -> MetadataEncoding? {
        var n = 0.0, sLat = 0.0, sLon = 0.0, qLat = 0.0, qLon = 0.0
        for (la, lo) in zip(latitudes, longitudes) {
            guard let la, let lo else { continue }
            n += 1; sLat += la; sLon += lo; qLat += la * la; qLon += lo * lo
        }
        guard n > 0 else { return nil }
        func std(_ s: Double, _ q: Double) -> Float {
            let v = max(0, q / n - (s / n) * (s / n)).squareRoot()
            return v > 1e-9 ? Float(v) : 1
        }
        return MetadataEncoding(latMean: Float(sLat / n), latStd: std(sLat, qLat), lonMean: Float(sLon / n), lonStd: std(sLon, qLon),
                                sources: Array(Set(sources.compactMap { $0 })).sorted())
    }

    /// Writes the `width` floats of one record into `out`.
    public func encode(lat: Double?, lon: Double?, source: String?, into out: UnsafeMutablePointer<Float>) {
        out.update(repeating: 0, count: width)
        if let lat, let lon {
            out[0] = (Float(lat) - latMean) / latStd
            out[1] = (Float(lon) - lonMean) / lonStd
        } else {
            out[2] = 1
        }
        guard !sources.isEmpty else { return }
        let k = source.flatMap { s in sources.firstIndex(of: s) } ?? sources.count
        out[3 + k] = 1
    }
}
