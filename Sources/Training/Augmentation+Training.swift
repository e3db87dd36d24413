import Foundation
import Dist
import Model
import Shards
import Support

/// Where the normalisation mean/std come from (`--normalize`).
public enum Normalization: String, Codable, Sendable, CaseIterable {
    /// `--mean`/`--std` as given.
    case custom
    /// torchvision's ImageNet constants (for 1 channel: their averages 0.449 / 0.226).
    case imagenet
    /// Per-channel mean/std of the training images (at the model size, 8-bit / 255), computed
    /// by rank 0 over at most `DatasetStatistics.maxSamples` evenly spaced samples and broadcast.
    case dataset

    public static let imagenetMean: [Float] = [0.485, 0.456, 0.406]
    public static let imagenetStd: [Float] = [0.229, 0.224, 0.225]
}

enum DatasetStatistics {
    static let maxSamples = 10_000

    /// Per-channel mean and std over `set`'s images as the cache holds them. A sample that cannot
    /// be read is an error naming the manifest line (skipped with `skipFailures`).
    static func compute(_ set: LabeledSet, cache: ImageCache, channels: Int, skipFailures: Bool) throws -> (mean: [Float], std: [Float]) {
        let n = set.count, k = min(n, maxSamples)
        let picks = (0..<k).map { $0 * n / k }
        var sum = [Double](repeating: 0, count: channels), sq = sum
        var pixels = 0
        var start = 0
        while start < picks.count {
            let chunk = Array(picks[start..<min(start + 256, picks.count)])
            start += chunk.count
            for (i, r) in zip(chunk, cache.images(chunk.map { set.paths[$0] })) {
                let image: Image
                do { image = try r.get() } catch {
                    if skipFailures { continue }
                    throw TrainingError.badSample("\(set.manifest):\(set.lines[i]): image \"\(set.images[i])\": \(error)")
                }
                let c = image.channels
                image.pixels.withUnsafeBufferPointer { px in
                    for ch in 0..<c {
                        var s = 0.0, s2 = 0.0
                        var j = ch
                        while j < px.count { let v = Double(px[j]) / 255; s += v; s2 += v * v; j += c }
                        sum[ch] += s; sq[ch] += s2
                    }
                }
                pixels += image.width * image.height
            }
        }
        guard pixels > 0 else { throw TrainingError.invalidOption("--normalize dataset: no training image could be read") }
        let mean = sum.map { $0 / Double(pixels) }
        let std = zip(sq, mean).map { (max($0 / Double(pixels) - $1 * $1, 0)).squareRoot() }
        if let c = std.firstIndex(where: { $0 < 1e-6 }) {
            throw TrainingError.invalidOption("--normalize dataset: channel \(c) of \(set.manifest) is constant (std 0); give --mean/--std")
        }
        return (mean.map { Float($0) }, std.map { Float($0) })
    }
}

extension Normalization {
    /// `format` with this normalisation's mean/std (dataset statistics: rank 0 computes, every
    /// rank receives the same values).
    func resolve(_ format: InputFormat, train: LabeledSet, cache: ImageCache, comm: Communicator, skipFailures: Bool) throws -> InputFormat {
        switch self {
        case .custom:
            return format
        case .imagenet:
            let mean = format.channels == 3 ? Self.imagenetMean : [Self.imagenetMean.reduce(0, +) / 3]
            let std = format.channels == 3 ? Self.imagenetStd : [Self.imagenetStd.reduce(0, +) / 3]
            return try InputFormat(channels: format.channels, imageSize: format.imageSize, mean: mean, std: std)
        case .dataset:
            let stats = try DatasetExchange.share(comm) {
                let s = try DatasetStatistics.compute(train, cache: cache, channels: format.channels, skipFailures: skipFailures)
                return s.mean + s.std
            }
            let c = format.channels
            return try InputFormat(channels: c, imageSize: format.imageSize, mean: Array(stats[0..<c]), std: Array(stats[c..<(2 * c)]))
        }
    }
}

extension TrainOptions {
    /// The training source's augmenter and mixer (nil when off).
    func augmentation(trainCount: Int) -> (Augmenter?, SampleMixer?) {
        let a = augment
        guard a.transformsImages || a.mixes else { return (nil, nil) }
        let augmenter = Augmenter(options: a, seed: seed, size: imageSize, channels: channels)
        let mixer = a.mixes ? SampleMixer(options: a, seed: seed, population: trainCount, size: imageSize) : nil
        return (augmenter, mixer)
    }
}

/// `--dump-augmented DIR` (debugging and tests): each rank writes every sample of each epoch's
/// first batch as `e<epoch>-s<sample>.f32` — the model input (CHW floats) followed by the
/// target distribution (`classes` floats), little-endian — so the pixels a sample got can be
/// compared across world sizes.
enum AugmentDump {
    static func write(dir: String, epoch: Int, batch: LoadedBatch, sampleCount: Int, classes: Int,
                      targets: UnsafePointer<Float>?) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for n in 0..<batch.count {
            var data = Data(bytes: batch.inputs + n * sampleCount, count: sampleCount * 4)
            var t = [Float](repeating: 0, count: classes)
            if let targets { for k in 0..<classes { t[k] = targets[n * classes + k] } } else { t[Int(batch.labels[n])] = 1 }
            t.withUnsafeBytes { data.append(contentsOf: $0) }
            try AtomicFile.write(data, to: (dir as NSString).appendingPathComponent("e\(epoch)-s\(batch.indices[n]).f32"), durable: false)
        }
    }
}
