import Foundation

/// Training samples whose images come through a rank's `ImageCache` (paths, `file:` or
/// `http(s)` URLs), for `BatchLoader`: `prepare` gets a whole batch from the cache at once
/// (misses fetched concurrently, decoded on `decodeWorkers` threads), then each `load`
/// normalises its image (already at the model size) into the batch.
///
///     let source = CachedImageSource(cache: cache, references: refs, labels: labels,
///                                    mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
///     source.planEpoch(sampler, epoch: e, fromStep: 0, rank: rank, worldSize: world)  // look-ahead
///     let loader = BatchLoader(source: source, maxBatch: perRankBatch)
///
/// Errors thrown by `load` are `ImageLoadError`s naming the path or URL.
public final class CachedImageSource: SampleSource, @unchecked Sendable {
    public let cache: ImageCache
    /// Image reference of each sample index.
    public let references: [String]
    /// Class index of each sample index.
    public let labels: [Int32]
    public let mean: [Float]
    public let std: [Float]
    public var sampleCount: Int { cache.options.channels * cache.options.imageSize * cache.options.imageSize }

    private let lock = NSLock()
    private var staged: [Int: Result<Image, ImageLoadError>] = [:]

    public init(cache: ImageCache, references: [String], labels: [Int32], mean: [Float], std: [Float]) {
        precondition(references.count == labels.count, "CachedImageSource: one label per reference")
        self.cache = cache
        self.references = references
        self.labels = labels
        self.mean = mean
        self.std = std
    }

    /// Fetches (or finds) the batch's images; the following `load` calls use them.
    public func prepare(_ indices: [Int]) {
        let results = cache.images(indices.map { references[$0] })
        lock.lock()
        staged.removeAll(keepingCapacity: true)   // one batch at a time per producer thread
        for (i, r) in zip(indices, results) { staged[i] = r }
        lock.unlock()
    }

    /// Downloads coming batches' remote images ahead of decoding (see `ImageCache.fetchAhead`).
    public func fetchAhead(_ indices: [Int]) { cache.fetchAhead(indices.map { references[$0] }) }
    public func discardFetchedAhead() { cache.discardFetchedAhead() }

    public func load(_ index: Int, into out: UnsafeMutablePointer<Float>) throws -> Int32 {
        lock.lock()
        let prepared = staged.removeValue(forKey: index)
        lock.unlock()
        let image: Image
        if let prepared { image = try prepared.get() } else { image = try cache.image(references[index]) }
        Preprocess.resizeNormalize(image, size: cache.options.imageSize, mean: mean, std: std, into: out)
        return labels[index]
    }

    /// Feeds the cache's look-ahead policy this rank's accesses from `step` of `epoch` to the
    /// end of the next epoch (call at each epoch start, and after resuming mid-epoch).
    public func planEpoch(_ sampler: ShardedSampler, epoch: Int, fromStep step: Int = 0, rank: Int, worldSize: Int) {
        let order = sampler.accessOrder(rank: rank, worldSize: worldSize, epoch: epoch, fromStep: step, epochs: 2)
        cache.setFutureAccesses(order.map { references[$0] })
    }
}

extension ShardedSampler {
    /// The sample indices `rank` asks for, in order, from `step` of `epoch` through the end of
    /// epoch `epoch + epochs - 1` (the sequence a rank's cache sees).
    public func accessOrder(rank: Int, worldSize: Int, epoch: Int, fromStep step: Int = 0, epochs: Int = 1) -> [Int] {
        var out: [Int] = []
        for e in epoch..<(epoch + max(epochs, 1)) {
            let plan = self.epoch(e)
            for s in (e == epoch ? step : 0)..<plan.steps {
                out += plan.samples(step: s, rank: rank, worldSize: worldSize)
            }
        }
        return out
    }
}
