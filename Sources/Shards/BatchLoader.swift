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
}

extension SampleSource {
    public func prepare(_ indices: [Int]) {}
    public var metadataCount: Int { 0 }
    public func loadMetadata(_ index: Int, into: UnsafeMutablePointer<Float>) {}
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

/// Prepares batches on a background thread while the caller computes, through a bounded ring of
/// preallocated slots (no allocation per batch). Within a batch, samples may be decoded by
/// several worker threads.
///
///     let loader = BatchLoader(source: src, maxBatch: 32, prefetch: 3)
///     loader.start(batches: plan)                // [[sample index]] for this rank, in order
///     while let batch = try loader.next() { …; loader.recycle(batch) }
public final class BatchLoader: @unchecked Sendable {
    public let source: SampleSource
    public let maxBatch: Int
    public let workers: Int
    public let skipFailures: Bool
    /// Seconds the consumer spent blocked in `next()` since the last `start` (data stall).
    public private(set) var waitSeconds = 0.0

    private let lock = NSCondition()
    private var free: [LoadedBatch]
    private var ready: [LoadedBatch] = []
    private var pending: [[Int]] = []
    private var produced = 0, consumed = 0, total = 0
    private var error: Error?
    private var generation = 0
    private var shuttingDown = false
    private var thread: Thread?

    public init(source: SampleSource, maxBatch: Int, prefetch: Int = 3, workers: Int = 1, skipFailures: Bool = false) {
        self.source = source
        self.maxBatch = maxBatch
        self.workers = max(1, workers)
        self.skipFailures = skipFailures
        free = (0..<max(2, prefetch)).map { _ in LoadedBatch(capacity: maxBatch, sampleCount: source.sampleCount,
                                                                 metadataCount: source.metadataCount) }
        // The thread holds the loader until `shutdown()`: call it when done.
        let t = Thread { self.produce() }
        t.name = "distrainer-loader"
        thread = t
        t.start()
    }

    /// Stops the producer thread (pending batches are discarded). Must be called when done:
    /// the thread keeps the loader alive until then.
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
        produced = 0; consumed = 0; total = batches.count
        error = nil
        waitSeconds = 0
        lock.broadcast()
        lock.unlock()
    }

    /// The next batch in order, or nil when the sequence is finished. Throws the first sample
    /// failure (unless `skipFailures`).
    public func next() throws -> LoadedBatch? {
        let t0 = DispatchTime.now().uptimeNanoseconds
        lock.lock()
        defer {
            lock.unlock()
            waitSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        while true {
            if consumed == total { return nil }
            if let i = ready.firstIndex(where: { $0.sequence == consumed }) {
                consumed += 1
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

    private func produce() {
        while true {
            lock.lock()
            while !shuttingDown && (produced >= total || free.isEmpty || error != nil) { lock.wait() }
            if shuttingDown { lock.unlock(); return }
            let slot = free.removeLast()
            let seq = produced, gen = generation
            let indices = pending[seq]
            produced += 1
            lock.unlock()

            let failure = fill(slot, indices: indices)
            slot.sequence = seq

            lock.lock()
            if gen != generation {
                free.append(slot)            // a new sequence started meanwhile
            } else if let failure, !skipFailures {
                error = failure
                free.append(slot)
            } else {
                ready.append(slot)
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
