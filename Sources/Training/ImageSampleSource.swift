import Model
import Shards

/// Input preprocessing shared by training, evaluation and prediction.
public struct InputFormat: Codable, Sendable, Equatable {
    public var channels: Int
    public var imageSize: Int
    public var mean: [Float]
    public var std: [Float]
    public var sampleCount: Int { channels * imageSize * imageSize }

    public init(channels: Int, imageSize: Int, mean: [Float], std: [Float]) throws {
        guard channels == 1 || channels == 3 else { throw TrainingError.invalidOption("--channels must be 1 or 3, got \(channels)") }
        guard imageSize >= 4 else { throw TrainingError.invalidOption("--image-size must be at least 4, got \(imageSize)") }
        func perChannel(_ v: [Float], _ name: String) throws -> [Float] {
            if v.count == channels { return v }
            if v.count == 1 { return Array(repeating: v[0], count: channels) }
            throw TrainingError.invalidOption("--\(name) needs 1 or \(channels) values, got \(v.count)")
        }
        self.channels = channels; self.imageSize = imageSize
        self.mean = try perChannel(mean, "mean"); self.std = try perChannel(std, "std")
        guard self.std.allSatisfy({ $0 > 0 }) else { throw TrainingError.invalidOption("--std values must be positive") }
    }
}

/// A manifest's images (paths, `file:` or `http(s)` URLs) through the rank's `ImageCache`, into
/// the model's input; a failure names the manifest line and the image reference.
final class ImageSampleSource: SampleSource, @unchecked Sendable {
    let set: LabeledSet
    let cached: CachedImageSource
    /// The fusion model's metadata encoding (nil: images only).
    let metadata: MetadataEncoding?
    var sampleCount: Int { cached.sampleCount }
    var metadataCount: Int { metadata?.width ?? 0 }

    /// `augmenter`/`mixer`: training data only (validation and test data are never augmented).
    init(set: LabeledSet, format: InputFormat, cache: ImageCache, metadata: MetadataEncoding? = nil,
         augmenter: Augmenter? = nil, mixer: SampleMixer? = nil) {
        self.set = set
        self.metadata = metadata
        cached = CachedImageSource(cache: cache, references: set.paths, labels: set.labels, mean: format.mean, std: format.std,
                                   augmenter: augmenter, mixer: mixer)
    }

    func prepare(_ indices: [Int]) { cached.prepare(indices) }
    func fetchAhead(_ indices: [Int]) { cached.fetchAhead(indices) }
    func discardFetchedAhead() { cached.discardFetchedAhead() }

    func loadMetadata(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        metadata?.encode(lat: set.latitudes[index], lon: set.longitudes[index], source: set.sources[index], into: out)
    }

    func load(_ index: Int, into out: UnsafeMutablePointer<Float>) throws -> Int32 {
        do { return try cached.load(index, into: out) } catch {
            throw TrainingError.badSample("\(set.manifest):\(set.lines[index]): image \"\(set.images[index])\": \(error)")
        }
    }
}

/// Random inputs and labels held in memory (benchmarks).
struct SyntheticSampleSource: SampleSource {
    let sampleCount: Int
    let classes: Int
    func load(_ index: Int, into out: UnsafeMutablePointer<Float>) throws -> Int32 {
        var x = UInt32(truncatingIfNeeded: index &* 2_654_435_761)
        for i in 0..<sampleCount {
            x = x &* 1_664_525 &+ 1_013_904_223
            out[i] = Float(x >> 8) / Float(1 << 24) - 0.5
        }
        return Int32(index % classes)
    }
}
