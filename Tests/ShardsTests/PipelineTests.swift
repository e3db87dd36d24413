import Foundation
@testable import Shards
import Testing
import TestSupport

/// A sample source that takes a set time per sample and records the order of its calls.
final class RecordingSource: SampleSource, @unchecked Sendable {
    let sampleCount = 4
    let loadSeconds: Double
    private let lock = NSLock()
    private(set) var events: [(kind: String, indices: [Int])] = []
    init(loadSeconds: Double = 0) { self.loadSeconds = loadSeconds }

    func fetchAhead(_ indices: [Int]) { lock.lock(); events.append(("fetch", indices)); lock.unlock() }
    func prepare(_ indices: [Int]) { lock.lock(); events.append(("prepare", indices)); lock.unlock() }
    func load(_ index: Int, into out: UnsafeMutablePointer<Float>) throws -> Int32 {
        if loadSeconds > 0 { Thread.sleep(forTimeInterval: loadSeconds) }
        for i in 0..<sampleCount { out[i] = Float(index) }
        return Int32(index % 7)
    }
}

@Suite struct PipelineTests {
    static func plan(batches: Int, size: Int) -> [[Int]] { (0..<batches).map { b in (0..<size).map { b * size + $0 } } }

    /// Every batch's samples are handed to `fetchAhead` (once, in order) before the batch is
    /// decoded, and never more than the fetch-ahead limit ahead of the decoder.
    @Test func remoteReadsRunAheadOfDecoding() throws {
        let source = RecordingSource()
        let loader = BatchLoader(source: source, maxBatch: 3, prefetch: 4, fetchAhead: 5)
        defer { loader.shutdown() }
        let plan = Self.plan(batches: 40, size: 3)
        var firstSequence: [(kind: String, indices: [Int])] = []
        for run in 0..<2 {   // the second sequence starts over cleanly
            loader.start(batches: plan)
            var got: [Int] = []
            while let batch = try loader.next() {
                got += batch.indices
                #expect(batch.inputs[0] == Float(batch.indices[0]))
                loader.recycle(batch)
            }
            #expect(got == Array(plan.joined()))
            if run == 0 { firstSequence = source.events }
        }
        var fetched: [Int] = [], prepared = 0
        for e in firstSequence {
            if e.kind == "fetch" {
                fetched += e.indices
                #expect(fetched.count <= (prepared + 5) * 3, "fetched \(fetched.count) samples with \(prepared) batches prepared")
            } else {
                #expect(e.indices == plan[prepared])
                #expect(fetched.count >= (prepared + 1) * 3, "batch \(prepared) prepared before it was fetched")
                prepared += 1
            }
        }
        #expect(fetched == Array(plan.joined()))
        #expect(prepared == 40)
        #expect(source.events.filter { $0.kind == "prepare" }.count == 80)
    }

    /// The decode depth follows the step time: a slow producer and a fast consumer use every
    /// slot allowed; a fast producer and a slow consumer need only two.
    @Test func depthAdaptsToStepAndLoadTimes() throws {
        let slow = BatchLoader(source: RecordingSource(loadSeconds: 0.004), maxBatch: 2, prefetch: 6, fetchAhead: 0)
        defer { slow.shutdown() }
        slow.start(batches: Self.plan(batches: 12, size: 2))
        while let b = try slow.next() { slow.recycle(b) }
        #expect(slow.depth == 6)
        // The consumer waited for nearly every batch: at least 11 batches × 8 ms of loading.
        #expect(slow.waitSeconds >= 11 * 0.008 * 0.95, "\(slow.waitSeconds)")

        let fast = BatchLoader(source: RecordingSource(), maxBatch: 2, prefetch: 6, fetchAhead: 0)
        defer { fast.shutdown() }
        fast.start(batches: Self.plan(batches: 12, size: 2))
        let t0 = Date()
        var steps = 0
        while let b = try fast.next() { fast.recycle(b); Thread.sleep(forTimeInterval: 0.01); steps += 1 }
        #expect(steps == 12)
        #expect(fast.depth == 2)
        #expect(fast.waitSeconds < Date().timeIntervalSince(t0) - 12 * 0.01 + 1e-3)
    }

    /// Fetched-ahead remote images are downloaded once, counted once, and then only decoded;
    /// a failure fetched ahead is reported by `images` without another download.
    @Test func cacheFetchesAheadOnce() throws {
        guard FaultServer.available else { print("skipped: python3 not found for the test HTTP server"); return }
        let server = try FaultServer()
        defer { server.stop() }
        var refs: [String] = []
        for i in 0..<6 {
            try server.put("\(i).png", try CacheFixtures.png(i))
            refs.append(server.url("\(i).png"))
        }
        refs.append(server.url("gone.png"))
        var o = CacheFixtures.options(memoryEntries: 16)
        o.batchSize = 4
        let cache = try ImageCache(options: o)
        cache.fetchAhead(refs + refs)
        #expect(cache.stats().fetches == 6)
        #expect(cache.fetchedAheadBytes > 0)
        cache.fetchAhead(refs)                           // already waiting: nothing more
        let results = cache.images(refs)
        for i in 0..<6 { #expect(try results[i].get() == CacheFixtures.expected(try CacheFixtures.png(i))) }
        guard case let .failure(.fetch(e)) = results[6], case .http(404) = e.reason else {
            Issue.record("expected a 404: \(results[6])"); return
        }
        #expect(cache.fetchedAheadBytes == 0)
        let st = cache.stats()
        #expect(st.fetches == 6 && st.failures == 1 && st.memoryHits == 0)
        for i in 0..<6 { #expect(try server.count("/\(i).png") == 1) }
        #expect(try server.count("/gone.png") == 1)
        // In the memory tier now: nothing is fetched ahead again; a discarded fetch is dropped.
        cache.fetchAhead(refs)
        #expect(try server.count("/0.png") == 1)
        #expect(cache.stats().fetches == 6)
        cache.discardFetchedAhead()
        #expect(cache.fetchedAheadBytes == 0)
    }
}
