import Foundation

/// How a rank's `ImageCache` is sized and where its disk tier lives.
public struct ImageCacheOptions: Sendable {
    /// Channels of the cached images (1 = gray, 3 = RGB).
    public var channels: Int
    /// Side of the square model input: images are resized to `imageSize`×`imageSize` once,
    /// when they enter the memory tier.
    public var imageSize: Int
    /// Bound of the memory tier in bytes (decoded images at the model size); 0 disables it.
    public var memoryBytes = 0
    /// Bound of the disk tier in bytes (fetched files of remote images); 0 disables it.
    public var diskBytes = 0
    /// The disk tier's folder: this rank's own (e.g. `cache/rank-3`); required with `diskBytes`.
    public var directory: String?
    /// Eviction policy of both tiers. Look-ahead needs `setFutureAccesses`; without it, it is LRU.
    public var policy: EvictionPolicy = .lookAhead
    /// Images per batch on this rank: each enabled tier must hold at least one batch.
    public var batchSize = 1
    /// Pixel cap for decoding (decompression bombs).
    public var maxPixels = PNGCodec.defaultMaxPixels
    /// Threads that decode and resize a batch's misses.
    public var decodeWorkers = 1
    /// fsync each disk entry (see `AtomicFile`): off by default, since entries are checksummed
    /// and a torn one is refetched.
    public var durableWrites = false
    /// How remote images are fetched (`maxResponseBytes` also sizes the disk-tier check).
    public var fetch = FetchOptions()
    /// About how many bytes of fetched-ahead images (`fetchAhead`) wait for decoding at most.
    public var fetchAheadBytes = 256 << 20

    public init(channels: Int, imageSize: Int) {
        self.channels = channels
        self.imageSize = imageSize
    }

    /// What one memory-tier entry is charged: its pixels plus a fixed allowance for the key,
    /// the array header and the index (256 bytes).
    public var memoryEntryBytes: Int { channels * imageSize * imageSize + ImageCache.memoryEntryOverhead }

    /// The disk-tier size that holds any batch: `batchSize` files at the response size cap
    /// (plus headers with URLs of up to 2 KB).
    public var diskBytesForOneBatch: Int { batchSize * DiskStore.fileSize(url: String(repeating: "x", count: 2048), payloadCount: fetch.maxResponseBytes) }
}

/// A cache that cannot be set up as asked, or its disk tier failing.
public enum CacheError: Error, CustomStringConvertible, Equatable, Sendable {
    case configuration(String)
    case directory(path: String, reason: String)
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case let .configuration(s): return "cache: \(s)"
        case let .directory(p, r): return "cache folder \(p): \(r)"
        case let .io(p, r): return "cache file \(p): \(r)"
        }
    }
}

/// Why an image could not be produced: it could not be fetched, or its bytes did not decode.
/// Both name the path or URL.
public enum ImageLoadError: Error, CustomStringConvertible, Equatable, Sendable {
    case fetch(FetchError)
    case decode(ImageError)

    public var source: String {
        switch self {
        case let .fetch(e): return e.source
        case let .decode(e): return e.source
        }
    }

    public var description: String {
        switch self {
        case let .fetch(e): return e.description
        case let .decode(e): return e.description
        }
    }
}

/// Counters of an `ImageCache`, since creation or the last `resetStats()`.
public struct CacheStats: Sendable, Equatable, Codable {
    /// Images asked for.
    public var accesses = 0
    public var memoryHits = 0
    public var memoryMisses = 0
    /// Remote images found (and verified) on disk / not found there. Local files and a
    /// disabled disk tier count neither.
    public var diskHits = 0
    public var diskMisses = 0
    /// Remote images downloaded, and their bytes.
    public var fetches = 0
    public var bytesFetched = 0
    /// Local files read (plain paths and `file:` URLs).
    public var localReads = 0
    public var memoryEvictions = 0
    public var diskEvictions = 0
    /// Disk entries that failed their checks on read (deleted and refetched).
    public var corruptEntries = 0
    /// Disk entries that could not be written (the image was still served).
    public var diskWriteErrors = 0
    /// Images that could not be fetched or decoded.
    public var failures = 0

    public init() {}

    /// Share of accesses served without reading the source (memory or disk tier).
    public var hitRate: Double { accesses == 0 ? 0 : Double(memoryHits + diskHits) / Double(accesses) }
    public var memoryHitRate: Double { memoryHits + memoryMisses == 0 ? 0 : Double(memoryHits) / Double(memoryHits + memoryMisses) }
    public var diskHitRate: Double { diskHits + diskMisses == 0 ? 0 : Double(diskHits) / Double(diskHits + diskMisses) }
}

/// One rank's image cache: two tiers bounded in bytes in front of an `HTTPFetcher`.
///
/// - **Memory tier**: decoded images already resized to the model input, as 8-bit HWC
///   `Image`s of `imageSize`×`imageSize`×`channels` (a quarter of the bytes of floats;
///   `Preprocess.resizeNormalize` at the same size then only normalises). Each entry is charged
///   `options.memoryEntryBytes`.
/// - **Disk tier** (remote images only; local files are already on disk): the fetched bytes,
///   content-addressed by SHA-256 of the URL under `directory`, written atomically, checksummed
///   and verified on every read (a bad entry is deleted and refetched, never served). It
///   survives restarts: the index is rebuilt at start by scanning the folder, dropping
///   temporary files of interrupted writes and malformed entries. Only bytes that decoded are
///   stored. Each entry is charged its file size (file-system block rounding aside).
/// - **Eviction**: LRU, or look-ahead — evict the entry whose next use in the plan given to
///   `setFutureAccesses` is farthest away. Neither tier ever holds more than its bound.
///
///     var o = ImageCacheOptions(channels: 3, imageSize: 224)
///     o.memoryBytes = 2 << 30; o.diskBytes = 50 << 30; o.directory = "cache/rank-\(rank)"
///     o.batchSize = 64
///     let cache = try ImageCache(options: o)
///     cache.setFutureAccesses(refsInTheOrderThisRankWillAskForThem)   // each epoch
///     let results = cache.images(refsOfTheNextBatch)                  // fetches misses concurrently
///     print(cache.stats().hitRate); cache.resetStats()
///
/// Thread-safe: the index is behind a lock; reading, fetching and decoding happen outside it.
public final class ImageCache: @unchecked Sendable {
    /// Bytes charged per memory entry on top of its pixels.
    public static let memoryEntryOverhead = 256

    public let options: ImageCacheOptions
    private let lock = NSLock()
    private let fetcher: HTTPFetcher
    private let store: DiskStore?
    private var memory: TierIndex<String>?
    private var images: [String: Image] = [:]
    private var disk: TierIndex<String>?
    private var plan = AccessPlan<String>()
    private var counters = CacheStats()
    /// Remote images fetched ahead (`fetchAhead`), waiting for `images` to decode them.
    private var staged: [String: Result<[UInt8], FetchError>] = [:]
    private var stagedBytes = 0
    private var stagedSizeEstimate = 64 << 10
    /// References an `images` call is reading, fetching or decoding now (not fetched ahead).
    private var loading: [String: Int] = [:]

    /// Opens the cache: checks the sizes, locks and scans the disk folder.
    public init(options: ImageCacheOptions) throws {
        let o = options
        guard o.channels == 1 || o.channels == 3 else { throw CacheError.configuration("channels must be 1 or 3, got \(o.channels)") }
        guard o.imageSize >= 1 else { throw CacheError.configuration("image size must be positive, got \(o.imageSize)") }
        guard o.batchSize >= 1 else { throw CacheError.configuration("batch size must be positive, got \(o.batchSize)") }
        guard o.memoryBytes >= 0, o.diskBytes >= 0 else { throw CacheError.configuration("cache sizes must be >= 0") }
        guard o.decodeWorkers >= 1 else { throw CacheError.configuration("decode workers must be at least 1") }
        if o.memoryBytes > 0 && o.memoryBytes < o.batchSize * o.memoryEntryBytes {
            throw CacheError.configuration("the memory tier (\(o.memoryBytes) bytes) cannot hold one batch of \(o.batchSize) "
                + "\(o.imageSize)x\(o.imageSize)x\(o.channels) images (\(o.batchSize * o.memoryEntryBytes) bytes at "
                + "\(o.memoryEntryBytes) per image): raise it or set it to 0 to disable the memory tier")
        }
        if o.diskBytes > 0 {
            guard o.directory?.isEmpty == false else { throw CacheError.configuration("a disk tier needs a cache folder") }
            if o.diskBytes < o.diskBytesForOneBatch {
                throw CacheError.configuration("the disk tier (\(o.diskBytes) bytes) cannot hold one batch of \(o.batchSize) files "
                    + "of up to \(o.fetch.maxResponseBytes) bytes (the maximum response size): needs \(o.diskBytesForOneBatch) bytes; "
                    + "raise it, lower the maximum response size, or set it to 0 to disable the disk tier")
            }
        }
        try o.fetch.validate()
        self.options = o
        fetcher = try HTTPFetcher(options: o.fetch)
        if o.memoryBytes > 0 { memory = TierIndex(capacity: o.memoryBytes, policy: o.policy) }
        if o.diskBytes > 0, let dir = o.directory {
            let store = try DiskStore(directory: dir, durable: o.durableWrites)
            self.store = store
            var index = TierIndex<String>(capacity: o.diskBytes, policy: o.policy)
            for entry in store.scan() {   // oldest first, so a smaller bound keeps the newest
                guard let evicted = index.insert(entry.url, size: entry.size, nextUse: Int.max) else {
                    store.delete(url: entry.url); continue
                }
                for e in evicted { store.delete(url: e.key) }
            }
            disk = index
        } else {
            store = nil
        }
    }

    // MARK: Plan and stats

    /// Gives the look-ahead policy the order in which this rank will ask for images from now
    /// on (e.g. the rest of this epoch, then the next epoch): replaces any previous plan.
    public func setFutureAccesses(_ references: [String]) {
        let newPlan = AccessPlan(references)
        lock.lock()
        defer { lock.unlock() }
        plan = newPlan
        memory?.replanAll { newPlan.nextUse($0) }
        disk?.replanAll { newPlan.nextUse($0) }
    }

    /// The counters since creation or the last `resetStats()`.
    public func stats() -> CacheStats {
        lock.lock(); defer { lock.unlock() }
        return counters
    }

    /// Zeroes the counters (e.g. at each epoch).
    public func resetStats() {
        lock.lock(); defer { lock.unlock() }
        counters = CacheStats()
    }

    /// Bytes charged to the memory tier now (never above `options.memoryBytes`).
    public var memoryBytesUsed: Int { lock.lock(); defer { lock.unlock() }; return memory?.used ?? 0 }
    /// Bytes charged to the disk tier now (never above `options.diskBytes`).
    public var diskBytesUsed: Int { lock.lock(); defer { lock.unlock() }; return disk?.used ?? 0 }
    /// Entries in each tier.
    public var memoryCount: Int { lock.lock(); defer { lock.unlock() }; return memory?.count ?? 0 }
    public var diskCount: Int { lock.lock(); defer { lock.unlock() }; return disk?.count ?? 0 }

    /// Whether each tier holds `reference` now (no access is counted).
    public func residency(_ reference: String) -> (memory: Bool, disk: Bool) {
        lock.lock(); defer { lock.unlock() }
        return (memory?.contains(reference) ?? false, disk?.contains(reference) ?? false)
    }

    /// The disk-tier file for `url` (tests inspect and damage it).
    func storePath(_ url: String) -> String { store?.path(for: url) ?? "" }

    // MARK: Fetching ahead

    /// Downloads the remote images among `references` that neither tier holds (nor an earlier
    /// call), concurrently, and keeps their bytes (or failures, after the fetcher's retries)
    /// for the `images` call that asks for them, which then only decodes. Counted as fetches
    /// now. Stops adding references once about `fetchAheadBytes` wait; those are fetched by
    /// `images` as usual.
    public func fetchAhead(_ references: [String]) {
        var todo: [String] = []
        var seen = Set<String>()
        lock.lock()
        var budget = options.fetchAheadBytes - stagedBytes
        for ref in references where seen.insert(ref).inserted {
            if images[ref] != nil || staged[ref] != nil || loading[ref] != nil || (disk?.contains(ref) ?? false) { continue }
            guard case .remote = HTTPFetcher.classify(ref, allowed: options.fetch.allowedSchemes) else { continue }
            budget -= stagedSizeEstimate
            if budget < 0 { break }
            todo.append(ref)
        }
        lock.unlock()
        if todo.isEmpty { return }
        let fetched = fetcher.fetch(todo)
        lock.lock()
        defer { lock.unlock() }
        for r in fetched {
            if case let .success(b) = r.result {
                counters.fetches += 1
                counters.bytesFetched += b.count
                stagedBytes += b.count
                stagedSizeEstimate = (3 * stagedSizeEstimate + b.count) / 4
            }
            staged[r.source] = r.result
        }
    }

    /// Drops fetched-ahead images not asked for yet (e.g. a new epoch's plan starts).
    public func discardFetchedAhead() {
        lock.lock(); defer { lock.unlock() }
        staged.removeAll()
        stagedBytes = 0
    }

    /// Bytes of fetched-ahead images waiting to be decoded.
    public var fetchedAheadBytes: Int { lock.lock(); defer { lock.unlock() }; return stagedBytes }

    /// Takes `ref`'s fetched-ahead outcome, if any.
    private func takeStaged(_ ref: String) -> Result<[UInt8], FetchError>? {
        lock.lock(); defer { lock.unlock() }
        guard let r = staged.removeValue(forKey: ref) else { return nil }
        if case let .success(b) = r { stagedBytes -= b.count }
        if store != nil { counters.diskMisses += 1 }
        if case .failure = r { counters.failures += 1 }
        return r
    }

    // MARK: Access

    /// The image for one reference, at the model size (see `images(_:)`).
    public func image(_ reference: String) throws(ImageLoadError) -> Image {
        try images([reference])[0].get()
    }

    /// The images for `references` (a batch, in order), each `imageSize`×`imageSize` 8-bit
    /// HWC: from memory, else from disk (verified), else fetched — all the batch's misses
    /// concurrently — then decoded and resized, stored in the tiers, and returned. One failed
    /// reference does not fail the others.
    public func images(_ references: [String]) -> [Result<Image, ImageLoadError>] {
        var results = [Result<Image, ImageLoadError>?](repeating: nil, count: references.count)
        var missing: [String] = []
        var waiting: [String: [Int]] = [:]

        // 1. Memory tier; every reference is one access of the plan.
        lock.lock()
        for (i, ref) in references.enumerated() {
            counters.accesses += 1
            plan.consume(ref)
            let next = plan.nextUse(ref)
            if let image = images[ref] {
                counters.memoryHits += 1
                memory?.touch(ref, nextUse: next)
                disk?.replan(ref, nextUse: next)
                results[i] = .success(image)
            } else if waiting[ref] != nil {
                counters.memoryHits += 1   // repeated within the batch: served by the first load
                waiting[ref, default: []].append(i)
            } else {
                counters.memoryMisses += 1
                disk?.replan(ref, nextUse: next)
                missing.append(ref)
                waiting[ref] = [i]
                loading[ref, default: 0] += 1
            }
        }
        lock.unlock()
        if missing.isEmpty { return Self.complete(results, references) }

        // 2. Disk tier (remote references only), 3. fetch what is left.
        var bytes: [String: [UInt8]] = [:]
        var failed: [String: ImageLoadError] = [:]
        var toFetch: [String] = []
        var remote = Set<String>()
        for ref in missing {
            guard case .remote = HTTPFetcher.classify(ref, allowed: options.fetch.allowedSchemes) else { toFetch.append(ref); continue }
            remote.insert(ref)
            switch takeStaged(ref) {
            case let .success(b)?: bytes[ref] = b
            case let .failure(e)?: failed[ref] = .fetch(e)
            case nil: if let b = readFromDisk(ref) { bytes[ref] = b } else { toFetch.append(ref) }
            }
        }
        if !toFetch.isEmpty {
            let fetched = fetcher.fetch(toFetch)
            lock.lock()
            for r in fetched {
                switch r.result {
                case let .success(b):
                    bytes[r.source] = b
                    if remote.contains(r.source) { counters.fetches += 1; counters.bytesFetched += b.count } else { counters.localReads += 1 }
                case let .failure(e):
                    failed[r.source] = .fetch(e)
                    counters.failures += 1
                }
            }
            lock.unlock()
        }

        // 4. Decode and resize (in parallel), 5. store: disk (fetched bytes that decoded), memory.
        let toDecode = missing.filter { bytes[$0] != nil }
        let decoded = decode(toDecode, bytes: bytes)
        lock.lock()
        for (ref, result) in zip(toDecode, decoded) {
            switch result {
            case let .success(image):
                if remote.contains(ref), let b = bytes[ref], store != nil, !(disk?.contains(ref) ?? true) {
                    storeOnDisk(ref, b)
                }
                storeInMemory(ref, image)
            case let .failure(e):
                failed[ref] = e
                counters.failures += 1
            }
        }
        for ref in missing {
            if let n = loading[ref], n > 1 { loading[ref] = n - 1 } else { loading[ref] = nil }
        }
        lock.unlock()
        for (ref, result) in zip(toDecode, decoded) {
            for i in waiting[ref] ?? [] { results[i] = result }
        }
        for (ref, e) in failed {
            for i in waiting[ref] ?? [] where results[i] == nil { results[i] = .failure(e) }
        }
        return Self.complete(results, references)
    }

    /// Every slot is filled by construction; an empty one would be a bug, reported as such.
    private static func complete(_ results: [Result<Image, ImageLoadError>?], _ refs: [String]) -> [Result<Image, ImageLoadError>] {
        results.enumerated().map { i, r in
            r ?? .failure(.fetch(FetchError(source: refs[i], reason: .invalidReference(detail: "internal: no result"), attempts: 0)))
        }
    }

    // MARK: Tiers

    /// The verified bytes of `ref` from the disk tier, counting a hit or a miss.
    private func readFromDisk(_ ref: String) -> [UInt8]? {
        guard let store else { return nil }
        lock.lock()
        let present = disk?.contains(ref) ?? false
        if !present { counters.diskMisses += 1 }
        lock.unlock()
        guard present else { return nil }
        let result = store.read(url: ref)   // outside the lock: reads and hashes the file
        lock.lock()
        defer { lock.unlock() }
        switch result {
        case let .hit(b):
            counters.diskHits += 1
            disk?.touch(ref, nextUse: plan.nextUse(ref))
            return b
        case .missing:
            disk?.remove(ref)
            counters.diskMisses += 1
        case .corrupt:
            disk?.remove(ref)
            counters.corruptEntries += 1
            counters.diskMisses += 1
        }
        return nil
    }

    /// Adds fetched bytes to the disk tier, evicting first. Called with the lock held (the
    /// write is a few hundred µs without fsync), so the bound holds for the files on disk too.
    private func storeOnDisk(_ ref: String, _ payload: [UInt8]) {
        guard let store, disk != nil else { return }
        let size = DiskStore.fileSize(url: ref, payloadCount: payload.count)
        guard let evicted = disk?.insert(ref, size: size, nextUse: plan.nextUse(ref)) else { return }   // larger than the tier
        for e in evicted {
            store.delete(url: e.key)
            counters.diskEvictions += 1
        }
        do {
            try store.write(url: ref, payload: payload)
        } catch {
            disk?.remove(ref)
            store.delete(url: ref)
            counters.diskWriteErrors += 1
        }
    }

    /// Adds a decoded image to the memory tier, evicting first. Lock held.
    private func storeInMemory(_ ref: String, _ image: Image) {
        guard memory != nil else { return }
        guard let evicted = memory?.insert(ref, size: options.memoryEntryBytes, nextUse: plan.nextUse(ref)) else { return }
        for e in evicted {
            images.removeValue(forKey: e.key)
            counters.memoryEvictions += 1
        }
        images[ref] = image
    }

    /// Decodes and resizes each reference's bytes, on up to `decodeWorkers` threads.
    private func decode(_ refs: [String], bytes: [String: [UInt8]]) -> [Result<Image, ImageLoadError>] {
        let o = options
        @Sendable func one(_ ref: String) -> Result<Image, ImageLoadError> {
            do {
                let image = try ImageDecoder.decode(bytes[ref] ?? [], channels: o.channels, maxPixels: o.maxPixels, source: ref)
                return .success(Preprocess.resize(image, size: o.imageSize))
            } catch let e as ImageError {
                return .failure(.decode(e))
            } catch {
                return .failure(.decode(.corrupt(source: ref, format: "image", reason: "\(error)")))
            }
        }
        let n = refs.count, workers = min(o.decodeWorkers, n)
        if workers <= 1 { return refs.map(one) }
        var out = [Result<Image, ImageLoadError>?](repeating: nil, count: n)
        out.withUnsafeMutableBufferPointer { buf in
            nonisolated(unsafe) let slots = buf
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var i = w
                while i < n { slots[i] = one(refs[i]); i += workers }
            }
        }
        return out.enumerated().map { i, r in r ?? one(refs[i]) }
    }
}
