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
/// With an `Augmenter` (training only), `load` augments the cached image for the current epoch
/// (`setEpoch`) before normalising; with a `SampleMixer`, it also loads the sample's partner
/// (staged with the batch by `prepare`), augments it with the partner's own draws and mixes it in.
/// Scratch buffers come from a pool (one per concurrent `load`), so nothing is allocated per sample.
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

    /// Training-time augmentation and mixing (nil: the image is only normalised).
    public let augmenter: Augmenter?
    public let mixer: SampleMixer?

    private let lock = NSLock()
    private var staged: [Int: Result<Image, ImageLoadError>] = [:]
    private var epoch = 0
    /// Free scratch blocks of `2 × sampleCount + plane` floats (own sample's scratch, partner).
    private var scratchPool: [UnsafeMutablePointer<Float>] = []

    public init(cache: ImageCache, references: [String], labels: [Int32], mean: [Float], std: [Float],
                augmenter: Augmenter? = nil, mixer: SampleMixer? = nil) {
        precondition(references.count == labels.count, "CachedImageSource: one label per reference")
        self.cache = cache
        self.references = references
        self.labels = labels
        self.mean = mean
        self.std = std
        self.augmenter = augmenter
        self.mixer = mixer
    }

    deinit { for p in scratchPool { p.deallocate() } }

    /// The epoch whose augmentation draws `load` uses; set before `BatchLoader.start`.
    public func setEpoch(_ e: Int) { lock.lock(); epoch = e; lock.unlock() }

    /// Mixing partners of `indices` in `epoch` (empty without a mixer).
    func partners(_ indices: [Int], epoch: Int) -> [Int] {
        guard let mixer else { return [] }
        return indices.compactMap { mixer.draw(sample: $0, epoch: epoch)?.partner }
    }

    /// Fetches (or finds) the batch's images, and their mixing partners'; the following `load`
    /// calls use them.
    public func prepare(_ indices: [Int]) {
        lock.lock(); let e = epoch; lock.unlock()
        var all = indices
        for p in partners(indices, epoch: e) where !all.contains(p) { all.append(p) }
        let results = cache.images(all.map { references[$0] })
        lock.lock()
        staged.removeAll(keepingCapacity: true)   // one batch at a time per producer thread
        for (i, r) in zip(all, results) { staged[i] = r }
        lock.unlock()
    }

    /// The cached image of sample `index` (staged by `prepare`, else read through the cache).
    func image(_ index: Int) throws -> Image {
        lock.lock()
        let prepared = staged[index]
        lock.unlock()
        if let prepared { return try prepared.get() }
        return try cache.image(references[index])
    }

    /// Downloads coming batches' remote images, and their mixing partners', ahead of decoding
    /// (see `ImageCache.fetchAhead`).
    public func fetchAhead(_ indices: [Int]) {
        lock.lock(); let e = epoch; lock.unlock()
        var all = indices
        for p in partners(indices, epoch: e) where !all.contains(p) { all.append(p) }
        cache.fetchAhead(all.map { references[$0] })
    }
    public func discardFetchedAhead() { cache.discardFetchedAhead() }

    public func load(_ index: Int, into out: UnsafeMutablePointer<Float>) throws -> Int32 {
        let image = try self.image(index)
        let size = cache.options.imageSize
        guard let augmenter else {
            Preprocess.resizeNormalize(image, size: size, mean: mean, std: std, into: out)
            return labels[index]
        }
        lock.lock()
        let e = epoch
        let scratch = scratchPool.popLast() ?? .allocate(capacity: sampleCount + size * size)
        lock.unlock()
        defer { lock.lock(); scratchPool.append(scratch); lock.unlock() }
        augmenter.apply(image, sample: index, epoch: e, into: out, scratch: scratch)
        if let mixer, let draw = mixer.draw(sample: index, epoch: e) {
            let partner = try self.image(draw.partner)
            let buffer = scratch + size * size
            augmenter.apply(partner, sample: draw.partner, epoch: e, into: buffer, scratch: scratch)
            mixer.mix(out, partner: buffer, draw: draw, channels: augmenter.channels)
        }
        normalizeInPlace(out, channels: augmenter.channels, plane: size * size)
        return labels[index]
    }

    /// (x − mean[c]) / std[c] over CHW floats in [0, 1].
    private func normalizeInPlace(_ x: UnsafeMutablePointer<Float>, channels: Int, plane: Int) {
        for ch in 0..<channels {
            let m = mean.count == 1 ? mean[0] : mean[ch], s = std.count == 1 ? std[0] : std[ch]
            let inv = 1 / s, p = x + ch * plane
            for i in 0..<plane { p[i] = (p[i] - m) * inv }
        }
    }

    /// Feeds the cache's look-ahead policy this rank's accesses from `step` of `epoch` to the
    /// end of the next epoch (call at each epoch start, and after resuming mid-epoch).
    public func planEpoch(_ sampler: ShardedSampler, epoch: Int, fromStep step: Int = 0, rank: Int, worldSize: Int) {
        var order: [Int] = []
        for e in epoch..<(epoch + 2) {   // as `prepare` will ask: each batch, then its new partners
            let plan = sampler.epoch(e)
            for s in (e == epoch ? step : 0)..<plan.steps {
                var batch = plan.samples(step: s, rank: rank, worldSize: worldSize)
                for p in partners(batch, epoch: e) where !batch.contains(p) { batch.append(p) }
                order += batch
            }
        }
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
