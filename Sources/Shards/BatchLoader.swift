import Foundation

/// Produces one training sample: decodes (or synthesises) it into the model's input layout.
public protocol SampleSource: Sendable {
    /// Elements of one preprocessed sample.
    var sampleCount: Int { get }
    /// Writes sample `index` into `into` (`sampleCount` floats) and returns its class index.
    func load(_ index: Int, into: UnsafeMutablePointer<Float>) throws -> Int32
    /// Called by `BatchLoader` on its producer thread with a batch's sample indices before
    /// their `load` calls, so a source can fetch the whole batch at once (see
    /// `CachedImageSource`). The default does nothing.
    func prepare(_ indices: [Int])
    /// Floats of per-sample side data (the fusion model's metadata vector); default 0.
    var metadataCount: Int { get }
    /// Writes sample `index`'s `metadataCount` floats of side data (called for loaded samples).
    func loadMetadata(_ index: Int, into: UnsafeMutablePointer<Float>)
    /// Called by `BatchLoader` on its fetch-ahead thread with the sample indices of coming
    /// batches (in order, before their `prepare`), so a source can start slow remote reads
    /// early. The default does nothing.
    func fetchAhead(_ indices: [Int])
    /// Drops whatever `fetchAhead` holds that was not used (a new sequence started).
    func discardFetchedAhead()
}

extension SampleSource {
    public func prepare(_ indices: [Int]) {}
    public var metadataCount: Int { 0 }
    public func loadMetadata(_ index: Int, into: UnsafeMutablePointer<Float>) {}
    public func fetchAhead(_ indices: [Int]) {}
    public func discardFetchedAhead() {}
}

/// A sample the loader could not produce, with the reason.
public struct SampleFailure: Sendable, CustomStringConvertible {
    public var index: Int
    public var reason: String
    public var description: String { reason }
}

/// A prepared batch in one of the loader's preallocated slots; valid until `recycle`d.
public final class LoadedBatch: @unchecked Sendable {
    /// [capacity, sampleCount] floats; the first `count` samples are filled.
    public let inputs: UnsafeMutablePointer<Float>
    /// Class index per sample.
    public let labels: UnsafeMutablePointer<Int32>
    /// [capacity, source.metadataCount] side data per sample (same order as `inputs`).
    public let metadata: UnsafeMutablePointer<Float>
    /// Sample indices of the filled rows (same order as `inputs`).
    public fileprivate(set) var indices: [Int]
    public fileprivate(set) var count = 0
    /// Position of this batch in the epoch.
    public fileprivate(set) var sequence = 0
    /// Samples dropped from this batch (only with `skipFailures`).
    public fileprivate(set) var failures: [SampleFailure] = []
    let capacity: Int

    init(capacity: Int, sampleCount: Int, metadataCount: Int) {
        self.capacity = capacity
        inputs = .allocate(capacity: max(1, capacity * sampleCount))
        inputs.initialize(repeating: 0, count: max(1, capacity * sampleCount))
        labels = .allocate(capacity: max(1, capacity))
        labels.initialize(repeating: 0, count: max(1, capacity))
        metadata = .allocate(capacity: max(1, capacity * metadataCount))
        metadata.initialize(repeating: 0, count: max(1, capacity * metadataCount))
        indices = []
        indices.reserveCapacity(capacity)
    }
    deinit { inputs.deallocate(); labels.deallocate(); metadata.deallocate() }
}

/// Prepares batches on background threads while the caller computes: a pipeline of
///
/// 1. a **fetch-ahead** thread that hands the source the coming batches' samples
///    (`SampleSource.fetchAhead`: remote images are downloaded ahead of decoding), and
/// 2. a **producer** thread that decodes a batch (`prepare` + `load`, optionally on several
///    worker threads) into one of a ring of preallocated slots,
///
/// each bounded by a depth sized from the measured step time: by Little's law a stage whose
/// batch takes `t` seconds keeps ⌈t / step⌉ + 1 batches in flight, so the consumer never waits
/// while the stage as a whole keeps up. The producer's depth is at most `prefetch` (the slots,
/// which are only allocated when the depth first reaches them); the fetch-ahead depth at most
/// `fetchAheadLimit` batches.
///
///     let loader = BatchLoader(source: src, maxBatch: 32, prefetch: 8)
///     loader.start(batches: plan)                // [[sample index]] for this rank, in order
///     while let batch = try loader.next() { …; loader.recycle(batch) }
public final class BatchLoader: @unchecked Sendable {
    public let source: SampleSource
    public let maxBatch: Int
    public let workers: Int
    public let skipFailures: Bool
    /// Most batches prepared ahead (decoded slots).
    public let maxDepth: Int
    /// Most batches fetched ahead of decoding.
    public let fetchAheadLimit: Int
    /// Seconds the consumer spent blocked in `next()` since the last `start` (data stall).
    public private(set) var waitSeconds = 0.0

    private let lock = NSCondition()
    private var free: [LoadedBatch]
    private var slots: Int
    private var ready: [LoadedBatch] = []
    private var pending: [[Int]] = []
    private var produced = 0, consumed = 0, total = 0
    /// Batches whose fetch-ahead call has returned.
    private var fetched = 0
    private var error: Error?
    private var generation = 0
    private var shuttingDown = false
    /// Moving averages (seconds) of the consumer's time per batch (between handing a batch
    /// out and asking for the next), the producer's decode time per batch, and the fetch-ahead
    /// time per call; nil until measured.
    private var stepTime: Double?, decodeTime: Double?, fetchTime: Double?
    private var handedOutAt: UInt64?

    /// `prefetch`: most batches decoded ahead (at least 2; the depth adapts below it);
    /// `fetchAhead`: most batches fetched ahead of decoding (0: no fetch-ahead thread).
    public init(source: SampleSource, maxBatch: Int, prefetch: Int = 3, fetchAhead: Int = 16, workers: Int = 1, skipFailures: Bool = false) {
        self.source = source
        self.maxBatch = maxBatch
        self.workers = max(1, workers)
        self.skipFailures = skipFailures
        maxDepth = max(2, prefetch)
        fetchAheadLimit = max(0, fetchAhead)
        // Two slots to start (one being filled, one being consumed); more as the depth grows.
        free = (0..<2).map { _ in LoadedBatch(capacity: maxBatch, sampleCount: source.sampleCount,
                                                  metadataCount: source.metadataCount) }
        slots = 2
        // The threads hold the loader until `shutdown()`: call it when done.
        let t = Thread { self.produce() }
        t.name = "distrainer-loader"
        t.start()
        if fetchAheadLimit > 0 {
            let f = Thread { self.fetchLoop() }
            f.name = "distrainer-fetch-ahead"
            f.start()
        }
    }

    /// Stops the background threads (pending batches are discarded). Must be called when
    /// done: the threads keep the loader alive until then.
    public func shutdown() {
        lock.lock(); shuttingDown = true; lock.broadcast(); lock.unlock()
    }

    /// Begins a new sequence of batches (e.g. an epoch); any unconsumed batches are discarded.
    public func start(batches: [[Int]]) {
        precondition(batches.allSatisfy { $0.count <= maxBatch })
        lock.lock()
        generation += 1
        free += ready
        ready.removeAll(keepingCapacity: true)
        pending = batches
        produced = 0; consumed = 0; fetched = fetchAheadLimit > 0 ? 0 : batches.count; total = batches.count
        error = nil
        waitSeconds = 0
        handedOutAt = nil
        source.discardFetchedAhead()   // under the lock: the new sequence's fetches come after
        lock.broadcast()
        lock.unlock()
    }

    /// The decode depth now: batches the producer may prepare ahead of the consumer.
    public var depth: Int { lock.lock(); defer { lock.unlock() }; return decodeDepth }
    /// The fetch-ahead depth now: batches fetched ahead of the producer.
    public var fetchDepth: Int { lock.lock(); defer { lock.unlock() }; return fetchAheadDepth }

    /// ⌈stage time / step time⌉ + 1 within [lower, upper] (lock held); `upper` until measured.
    private func sized(_ stage: Double?, lower: Int, upper: Int) -> Int {
        guard let stage, let step = stepTime else { return upper }
        let n = step > 0 ? Int(min((stage / step).rounded(.up), 1e6)) + 1 : upper
        return min(max(n, lower), upper)
    }
    private var decodeDepth: Int { sized(decodeTime, lower: 2, upper: maxDepth) }
    private var fetchAheadDepth: Int { sized(fetchTime, lower: 1, upper: fetchAheadLimit) }

    private static func average(_ old: Double?, _ sample: Double) -> Double { old.map { 0.8 * $0 + 0.2 * sample } ?? sample }
    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// The next batch in order, or nil when the sequence is finished. Throws the first sample
    /// failure (unless `skipFailures`).
    public func next() throws -> LoadedBatch? {
        let t0 = Self.now()
        lock.lock()
        if let h = handedOutAt { stepTime = Self.average(stepTime, Double(t0 - h) / 1e9) }
        defer {
            let t1 = Self.now()
            handedOutAt = t1
            waitSeconds += Double(t1 - t0) / 1e9
            lock.unlock()
        }
        while true {
            if consumed == total { return nil }
            if let i = ready.firstIndex(where: { $0.sequence == consumed }) {
                consumed += 1
                lock.broadcast()
                return ready.remove(at: i)
            }
            if let error { throw error }
            lock.wait()
        }
    }

    /// Returns a batch's slot for reuse.
    public func recycle(_ batch: LoadedBatch) {
        lock.lock(); free.append(batch); lock.broadcast(); lock.unlock()
    }

    /// The producer may start batch `produced`: fetched ahead, within the depth, a slot free or
    /// allocatable (lock held).
    private var canProduce: Bool {
        produced < total && error == nil && produced < fetched && produced - consumed < decodeDepth
            && (!free.isEmpty || slots < maxDepth + 1)
    }

    private func produce() {
        while true {
            lock.lock()
            while !shuttingDown && !canProduce { lock.wait() }
            if shuttingDown { lock.unlock(); return }
            let slot: LoadedBatch
            if let s = free.popLast() { slot = s } else {
                slots += 1   // the depth grew: one more slot, kept for the loader's lifetime
                lock.unlock()
                slot = LoadedBatch(capacity: maxBatch, sampleCount: source.sampleCount, metadataCount: source.metadataCount)
                lock.lock()
            }
            let seq = produced, gen = generation
            let indices = pending[seq]
            produced += 1
            lock.unlock()

            let t0 = Self.now()
            let failure = fill(slot, indices: indices)
            slot.sequence = seq

            lock.lock()
            if gen != generation {
                free.append(slot)            // a new sequence started meanwhile
            } else {
                decodeTime = Self.average(decodeTime, Double(Self.now() - t0) / 1e9)
                if let failure, !skipFailures {
                    error = failure
                    free.append(slot)
                } else {
                    ready.append(slot)
                }
            }
            lock.broadcast()
            lock.unlock()
        }
    }

    /// Hands the source the batches from `fetched` on, up to the fetch-ahead depth past the
    /// producer, in calls of as many batches as the lead already built (1 when the producer
    /// waits, so the first batch comes quickly; then doubling), so their remote reads share
    /// the fetcher's concurrency.
    private func fetchLoop() {
        while true {
            lock.lock()
            while !shuttingDown && !(fetched < total && fetched < produced + fetchAheadDepth) { lock.wait() }
            if shuttingDown { lock.unlock(); return }
            let gen = generation, first = fetched
            let last = min(total, produced + fetchAheadDepth, first + max(1, first - produced))
            let indices = Array(pending[first..<last].joined())
            lock.unlock()

            let t0 = Self.now()
            source.fetchAhead(indices)
            let seconds = Double(Self.now() - t0) / 1e9

            lock.lock()
            if gen == generation {
                fetched = last
                fetchTime = Self.average(fetchTime, seconds)
            }
            lock.broadcast()
            lock.unlock()
        }
    }

    /// Decodes `indices` into `slot`, compacting out failed samples. Returns the first failure.
    private func fill(_ slot: LoadedBatch, indices: [Int]) -> Error? {
        let n = indices.count, per = source.sampleCount, metaPer = source.metadataCount
        source.prepare(indices)
        var errors = [Error?](repeating: nil, count: n)
        if workers > 1 && n > 1 {
            errors.withUnsafeMutableBufferPointer { errs in
                nonisolated(unsafe) let e = errs
                DispatchQueue.concurrentPerform(iterations: min(workers, n)) { w in
                    var i = w
                    while i < n {
                        do { slot.labels[i] = try source.load(indices[i], into: slot.inputs + i * per) }
                        catch { e[i] = error }
                        i += min(workers, n)
                    }
                }
            }
        } else {
            for i in 0..<n {
                do { slot.labels[i] = try source.load(indices[i], into: slot.inputs + i * per) }
                catch { errors[i] = error }
            }
        }
        slot.indices.removeAll(keepingCapacity: true)
        slot.failures.removeAll(keepingCapacity: true)
        var kept = 0, first: Error?
        for i in 0..<n {
            if let e = errors[i] {
                first = first ?? e
                slot.failures.append(SampleFailure(index: indices[i], reason: "\(e)"))
                continue
            }
            if kept != i {
                (slot.inputs + kept * per).update(from: slot.inputs + i * per, count: per)
                slot.labels[kept] = slot.labels[i]
            }
            if metaPer > 0 { source.loadMetadata(indices[i], into: slot.metadata + kept * metaPer) }
            slot.indices.append(indices[i])
            kept += 1
        }
        slot.count = kept
        return first
    }
}
