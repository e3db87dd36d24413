import Foundation
@testable import Shards
import Testing
import TestSupport

/// Small test images and cache options shared by the cache tests.
enum CacheFixtures {
    /// A PNG of a `w`×`h` RGB picture, distinct per seed.
    static func png(_ seed: Int, width: Int = 16, height: Int = 12) throws -> [UInt8] {
        try PNGCodec.encode(Image(width: width, height: height, channels: 3, pixels: TestFiles.bytes(width * height * 3, seed: UInt64(seed))))
    }

    /// What the cache must return for `bytes`: decoded, resized to `size`.
    static func expected(_ bytes: [UInt8], size: Int = 8) throws -> Image {
        Preprocess.resize(try ImageDecoder.decode(bytes, channels: 3, source: "x"), size: size)
    }

    static func options(memoryEntries: Int = 0, diskBytes: Int = 0, directory: URL? = nil,
                        policy: EvictionPolicy = .lru) -> ImageCacheOptions {
        var o = ImageCacheOptions(channels: 3, imageSize: 8)
        o.memoryBytes = memoryEntries * o.memoryEntryBytes
        o.diskBytes = diskBytes
        o.directory = directory?.path
        o.policy = policy
        o.fetch = fastFetchOptions()
        o.fetch.maxResponseBytes = 4096
        return o
    }

    /// Sum of the sizes of the entry files under a disk-tier folder (the lock file excluded).
    static func bytesOnDisk(_ dir: URL) -> Int {
        guard let e = FileManager.default.enumerator(atPath: dir.path) else { return 0 }
        var total = 0
        while let name = e.nextObject() as? String {
            let path = dir.appendingPathComponent(name).path
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
                  !name.hasSuffix(".lock") else { continue }
            total += (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        }
        return total
    }
}

@Suite struct EvictionTests {
    /// Capacity 3 on A B C D A B C: LRU evicts A at D, then B, C, D (every access misses);
    /// look-ahead evicts C at D (its next use is farthest), hits A and B, and at C evicts D
    /// (never used again; A and B neither, so the tie goes by LRU).
    @Test func lruVersusLookAheadOnAHandMadeSequence() {
        let sequence = ["A", "B", "C", "D", "A", "B", "C"]
        func replay(_ policy: EvictionPolicy) -> (evicted: [String], hits: Int) {
            var tier = TierIndex<String>(capacity: 3, policy: policy)
            var plan = AccessPlan(sequence)
            var evicted: [String] = [], hits = 0
            for key in sequence {
                plan.consume(key)
                if tier.contains(key) { hits += 1; tier.touch(key, nextUse: plan.nextUse(key)); continue }
                evicted += (tier.insert(key, size: 1, nextUse: plan.nextUse(key)) ?? []).map(\.key)
                #expect(tier.used <= 3)
            }
            return (evicted, hits)
        }
        let lru = replay(.lru), ahead = replay(.lookAhead)
        #expect(lru.evicted == ["A", "B", "C", "D"] && lru.hits == 0)
        #expect(ahead.evicted == ["C", "D"] && ahead.hits == 2, "\(ahead)")
    }

    @Test func accessPlanConsumesInOrder() {
        var plan = AccessPlan(["x", "y", "x", "z", "x"])
        #expect(plan.nextUse("x") == 0 && plan.nextUse("y") == 1 && plan.nextUse("w") == Int.max)
        plan.consume("x")
        #expect(plan.nextUse("x") == 2)
        plan.consume("x"); plan.consume("x")
        #expect(plan.nextUse("x") == Int.max)
        plan.consume("x")   // more accesses than planned: stays "never"
        #expect(plan.nextUse("x") == Int.max && plan.nextUse("z") == 3)
    }

    @Test func entriesLargerThanTheTierAreRefused() {
        var tier = TierIndex<Int>(capacity: 10, policy: .lru)
        #expect(tier.insert(1, size: 6, nextUse: 0)?.isEmpty == true)
        #expect(tier.insert(2, size: 11, nextUse: 0) == nil)
        #expect(tier.used == 6 && tier.contains(1))
        #expect(tier.insert(3, size: 5, nextUse: 0)?.map(\.key) == [1])
        #expect(tier.used == 5)
    }
}

@Suite struct ImageCacheLocalTests {
    /// The same hand-made sequence through the cache's memory tier, with local files.
    @Test func memoryTierEvictionOrder() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        var paths: [String: String] = [:]
        for (i, k) in ["A", "B", "C", "D"].enumerated() {
            let url = dir.appendingPathComponent("\(k).png")
            try TestFiles.write(try CacheFixtures.png(i), to: url)
            paths[k] = url.path
        }
        let sequence = ["A", "B", "C", "D", "A", "B", "C"].compactMap { paths[$0] }
        for policy in EvictionPolicy.allCases {
            let cache = try ImageCache(options: CacheFixtures.options(memoryEntries: 3, policy: policy))
            cache.setFutureAccesses(sequence)
            var afterD: [Bool] = []
            for (i, ref) in sequence.enumerated() {
                _ = try cache.image(ref)
                if i == 3 { afterD = ["A", "B", "C"].compactMap { paths[$0] }.map { cache.residency($0).memory } }
                #expect(cache.memoryBytesUsed <= cache.options.memoryBytes)
            }
            let s = cache.stats()
            switch policy {
            case .lru:
                #expect(afterD == [false, true, true], "LRU evicts A")
                #expect(s.memoryHits == 0 && s.memoryMisses == 7 && s.memoryEvictions == 4)
            case .lookAhead:
                #expect(afterD == [true, true, false], "look-ahead evicts C (used farthest in the future)")
                #expect(s.memoryHits == 2 && s.memoryMisses == 5 && s.memoryEvictions == 2)
            }
            #expect(s.localReads == s.memoryMisses && s.fetches == 0 && s.diskHits + s.diskMisses == 0)
        }
    }

    @Test func memoryBoundIsNeverExceeded() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        var refs: [String] = []
        for i in 0..<30 {
            let url = dir.appendingPathComponent("\(i).png")
            try TestFiles.write(try CacheFixtures.png(i, width: 8 + i, height: 20 - i / 2), to: url)
            refs.append(url.path)
        }
        var o = CacheFixtures.options(memoryEntries: 7)
        o.batchSize = 4
        o.decodeWorkers = 2
        let cache = try ImageCache(options: o)
        var rng = TestFiles.bytes(400, seed: 9).makeIterator()
        for _ in 0..<60 {
            let batch = (0..<4).compactMap { _ in rng.next().map { refs[Int($0) % refs.count] } }
            for (ref, r) in zip(batch, cache.images(batch)) {
                let img = try r.get()
                #expect(img == (try CacheFixtures.expected(try ImageFile.readBytes(path: ref))))
            }
            #expect(cache.memoryBytesUsed <= o.memoryBytes && cache.memoryCount <= 7)
        }
        let s = cache.stats()
        #expect(s.accesses == 240 && s.memoryHits + s.memoryMisses == 240 && s.memoryEvictions > 0)
        cache.resetStats()
        #expect(cache.stats() == CacheStats())
    }

    @Test func tiersTooSmallForOneBatchAreRefused() throws {
        var o = CacheFixtures.options(memoryEntries: 3)
        o.batchSize = 4
        #expect {
            try ImageCache(options: o)
        } throws: { error in
            guard let e = error as? CacheError, case let .configuration(text) = e else { return false }
            return text.contains("memory tier (\(3 * o.memoryEntryBytes) bytes) cannot hold one batch of 4")
        }
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        var d = CacheFixtures.options(diskBytes: 4096 * 3, directory: dir)
        d.batchSize = 4
        #expect {
            try ImageCache(options: d)
        } throws: { error in
            "\(error)".contains("disk tier (12288 bytes) cannot hold one batch of 4 files of up to 4096 bytes")
        }
        var noDir = CacheFixtures.options(diskBytes: 1 << 20)
        noDir.directory = nil
        #expect(throws: CacheError.configuration("a disk tier needs a cache folder")) { try ImageCache(options: noDir) }
    }

    @Test func oneFolderPerCache() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let o = CacheFixtures.options(diskBytes: 1 << 20, directory: dir)
        let first = try ImageCache(options: o)
        #expect(throws: CacheError.directory(path: dir.path, reason: "in use by another cache (each rank needs its own cache folder)")) {
            try ImageCache(options: o)
        }
        _ = first
    }

    @Test func cachedSourceFeedsTheBatchLoader() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        var refs: [String] = []
        for i in 0..<10 {
            let url = dir.appendingPathComponent("\(i).png")
            try TestFiles.write(try CacheFixtures.png(i), to: url)
            refs.append(url.path)
        }
        refs[7] = dir.appendingPathComponent("missing.png").path
        var o = CacheFixtures.options(memoryEntries: 10)
        o.batchSize = 4
        let cache = try ImageCache(options: o)
        let source = CachedImageSource(cache: cache, references: refs, labels: (0..<10).map { Int32($0 % 3) },
                                       mean: [0.5], std: [0.25])
        let sampler = try ShardedSampler(sampleCount: 10, globalBatch: 4, virtualShards: 2, seed: 3)
        source.planEpoch(sampler, epoch: 0, rank: 0, worldSize: 1)
        let loader = BatchLoader(source: source, maxBatch: 4, workers: 2, skipFailures: true)
        defer { loader.shutdown() }
        let epoch = sampler.epoch(0)
        loader.start(batches: (0..<epoch.steps).map { epoch.samples(step: $0, rank: 0, worldSize: 1) })
        var seen = 0
        while let batch = try loader.next() {
            for (row, index) in batch.indices.enumerated() {
                #expect(batch.labels[row] == Int32(index % 3))
                var want = [Float](repeating: 0, count: source.sampleCount)
                want.withUnsafeMutableBufferPointer {
                    Preprocess.resizeNormalize(try! CacheFixtures.expected(try! ImageFile.readBytes(path: refs[index])), size: 8,
                                               mean: [0.5], std: [0.25], into: $0.baseAddress!)
                }
                let got = Array(UnsafeBufferPointer(start: batch.inputs + row * source.sampleCount, count: source.sampleCount))
                #expect(got == want)
                seen += 1
            }
            for f in batch.failures { #expect(f.index == 7 && f.reason.contains("missing.png") && f.reason.contains("No such file")) }
            loader.recycle(batch)
        }
        #expect(seen == 9)
        #expect(sampler.accessOrder(rank: 0, worldSize: 1, epoch: 0).sorted() == Array(0..<10))
        #expect(cache.stats().accesses == 10)
    }
}

extension ServerTests {
    @Suite(.enabled(if: FaultServer.available, "python3 is needed for the HTTP fault server"))
    struct ImageCacheServerTests {
        /// Puts `count` PNGs on the server; returns their URLs and bytes.
        func publish(_ server: FaultServer, count: Int, prefix: String = "img") throws -> [(url: String, bytes: [UInt8])] {
            try (0..<count).map { i in
                let bytes = try CacheFixtures.png(i, width: 24 + i % 7, height: 20 + i % 5)
                try server.put("\(prefix)\(i).png", bytes)
                return (server.url("\(prefix)\(i).png"), bytes)
            }
        }

        @Test func diskBoundIsNeverExceeded() throws {
            let server = try FaultServer()
            defer { server.stop() }
            let items = try publish(server, count: 24)
            let dir = try TestSupport.makeTempDir()
            defer { TestSupport.removeTree(dir) }
            var o = CacheFixtures.options(memoryEntries: 0, diskBytes: 3 * 4096 + 3 * 2200, directory: dir)
            o.batchSize = 3
            let cache = try ImageCache(options: o)
            for round in 0..<3 {
                for start in stride(from: 0, to: 24, by: 3) {
                    let batch = items[start..<(start + 3)]
                    for (item, r) in zip(batch, cache.images(batch.map(\.url))) {
                        #expect(try r.get() == (try CacheFixtures.expected(item.bytes)))
                    }
                    #expect(cache.diskBytesUsed <= o.diskBytes)
                    #expect(CacheFixtures.bytesOnDisk(dir) == cache.diskBytesUsed, "round \(round): files = index")
                }
            }
            let s = cache.stats()
            #expect(s.diskEvictions > 0 && s.fetches == s.diskMisses && s.accesses == 72)
        }

        @Test func corruptEntryIsDetectedAndRefetched() throws {
            let server = try FaultServer()
            defer { server.stop() }
            let item = try publish(server, count: 1)[0]
            let dir = try TestSupport.makeTempDir()
            defer { TestSupport.removeTree(dir) }
            let cache = try ImageCache(options: CacheFixtures.options(diskBytes: 1 << 20, directory: dir))
            let good = try CacheFixtures.expected(item.bytes)
            #expect(try cache.image(item.url) == good)

            // Flip one payload byte of the entry file: the checksum no longer matches.
            let path = cache.storePath(item.url)
            var bytes = try ImageFile.readBytes(path: path)
            bytes[bytes.count - 20] ^= 0x40
            try TestFiles.write(bytes, to: URL(fileURLWithPath: path))
            #expect(try cache.image(item.url) == good)
            var s = cache.stats()
            #expect(s.corruptEntries == 1 && s.diskHits == 0 && s.fetches == 2)
            #expect(try server.count("/img0.png") == 2)

            // The refetched entry is sound again.
            #expect(try cache.image(item.url) == good)
            s = cache.stats()
            #expect(s.diskHits == 1 && s.fetches == 2)
        }

        @Test func restartReusesTheDiskTierAndDropsInterruptedWrites() throws {
            let server = try FaultServer()
            defer { server.stop() }
            let items = try publish(server, count: 10)
            let dir = try TestSupport.makeTempDir()
            defer { TestSupport.removeTree(dir) }
            let o = CacheFixtures.options(memoryEntries: 10, diskBytes: 1 << 20, directory: dir)
            var doomedPath = ""
            do {
                let cache = try ImageCache(options: o)
                for (item, r) in zip(items, cache.images(items.map(\.url))) { #expect(try r.get() == (try CacheFixtures.expected(item.bytes))) }
                #expect(cache.stats().fetches == 10)
                doomedPath = cache.storePath(items[9].url)
            }
            for i in 0..<10 { #expect(try server.count("/img\(i).png") == 1) }

            // Simulate a write of items[9] that was interrupted before its rename: the entry is
            // only a temporary file (holding other, valid-looking content), and a torn final file
            // for items[8] (cut short).
            let entry9 = try ImageFile.readBytes(path: doomedPath)
            unlink(doomedPath)
            let tmp = (doomedPath as NSString).deletingLastPathComponent + "/." + (doomedPath as NSString).lastPathComponent + ".tmp.4242"
            try TestFiles.write(entry9, to: URL(fileURLWithPath: tmp))
            let restarted = try ImageCache(options: o)
            #expect(!FileManager.default.fileExists(atPath: tmp), "temporary files are removed at start")
            #expect(restarted.diskCount == 9)
            let path8 = restarted.storePath(items[8].url)
            let entry8 = try ImageFile.readBytes(path: path8)
            try TestFiles.write(Array(entry8.prefix(entry8.count / 2)), to: URL(fileURLWithPath: path8))

            for (item, r) in zip(items, restarted.images(items.map(\.url))) { #expect(try r.get() == (try CacheFixtures.expected(item.bytes))) }
            let s = restarted.stats()
            #expect(s.diskHits == 8 && s.fetches == 2 && s.corruptEntries == 1, "\(s)")
            for i in 0..<8 { #expect(try server.count("/img\(i).png") == 1, "no fetch for cached img\(i)") }
            #expect(try server.count("/img8.png") == 2 && server.count("/img9.png") == 2)
        }

        @Test func restartWithZeroFetches() throws {
            let server = try FaultServer()
            defer { server.stop() }
            let items = try publish(server, count: 12)
            let dir = try TestSupport.makeTempDir()
            defer { TestSupport.removeTree(dir) }
            let o = CacheFixtures.options(diskBytes: 1 << 20, directory: dir)
            do { _ = try ImageCache(options: o).images(items.map(\.url)) }
            try server.resetStats()
            let cache = try ImageCache(options: o)
            #expect(cache.diskCount == 12)
            for (item, r) in zip(items, cache.images(items.map(\.url))) { #expect(try r.get() == (try CacheFixtures.expected(item.bytes))) }
            #expect(try server.stats().requests.isEmpty, "zero fetches for cached URLs")
            #expect(cache.stats().diskHits == 12 && cache.stats().fetches == 0)
        }

        @Test func batchFailuresAreIsolatedAndNotCached() throws {
            let server = try FaultServer()
            defer { server.stop() }
            let items = try publish(server, count: 3)
            let dir = try TestSupport.makeTempDir()
            defer { TestSupport.removeTree(dir) }
            let cache = try ImageCache(options: CacheFixtures.options(memoryEntries: 8, diskBytes: 1 << 20, directory: dir))
            let page = server.url("img0.png?fault=notimage"), missing = server.url("nope.png")
            let flaky = server.url("img1.png?fault=500&times=1")
            let refs = [items[0].url, page, missing, flaky, items[2].url]
            let results = cache.images(refs)
            #expect(try results[0].get() == (try CacheFixtures.expected(items[0].bytes)))
            #expect(try results[3].get() == (try CacheFixtures.expected(items[1].bytes)))
            #expect(try results[4].get() == (try CacheFixtures.expected(items[2].bytes)))
            guard case .failure(.decode(.unsupportedFormat(page, _))) = results[1] else { Issue.record("\(results[1])"); return }
            #expect(results[2] == .failure(.fetch(FetchError(source: missing, reason: .http(status: 404), attempts: 1))))
            #expect(cache.residency(page) == (false, false), "bytes that do not decode are not kept")
            #expect(cache.stats().failures == 2 && cache.diskCount == 3)
        }
    }
}

@Suite struct CacheSimulationTests {
    @Test func cyclicOrderDefeatsLRU() {
        // 0…9 in the same order every epoch, room for 5: LRU always evicts the next item
        // needed; Belady keeps 4 items for good plus a churning slot.
        let epochs = Array(repeating: Array(0..<10), count: 4)
        #expect(CacheSimulation.hitRates(epochs: epochs, capacity: 5, policy: .lru) == [0, 0, 0, 0])
        let belady = CacheSimulation.hitRate(epochs: epochs, capacity: 5, policy: .belady, from: 1)
        let ahead = CacheSimulation.hitRate(epochs: epochs, capacity: 5, policy: .lookAhead, from: 1)
        #expect(belady >= 0.4 && ahead >= 0.35 && ahead <= belady, "\(ahead) \(belady)")
        for p in CacheSimulation.Policy.allCases {
            #expect(CacheSimulation.hitRates(epochs: epochs, capacity: 10, policy: p).dropFirst().allSatisfy { $0 == 1 })
        }
    }

    @Test func beladyBoundsTheOthersOnTheSamplerOrder() throws {
        let sampler = try ShardedSampler(sampleCount: 600, globalBatch: 32, virtualShards: 8, seed: 7)
        let epochs = (0..<4).map { sampler.accessOrder(rank: 1, worldSize: 2, epoch: $0) }
        #expect(epochs.allSatisfy { $0.sorted() == sampler.workingSet(rank: 1, worldSize: 2) })
        for capacity in [30, 150, 240] {
            let lru = CacheSimulation.hitRate(epochs: epochs, capacity: capacity, policy: .lru, from: 1)
            let ahead = CacheSimulation.hitRate(epochs: epochs, capacity: capacity, policy: .lookAhead, from: 1)
            let belady = CacheSimulation.hitRate(epochs: epochs, capacity: capacity, policy: .belady, from: 1)
            #expect(lru <= ahead && ahead <= belady + 1e-12, "capacity \(capacity): \(lru) \(ahead) \(belady)")
            // Every sample is seen once per epoch, so no policy can beat capacity / working set.
            #expect(belady <= Double(capacity) / 300 + 1e-9)
        }
    }
}
