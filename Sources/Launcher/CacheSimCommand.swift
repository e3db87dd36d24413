import ArgumentParser
import Foundation
import Shards

/// `distrainer cache-sim`: how much of one rank's data a cache of a given size would serve,
/// under each eviction policy, on the real access order of `ShardedSampler`.
struct CacheSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache-sim",
        abstract: "Simulate one rank's image cache (LRU, look-ahead, Belady) on the sampler's access order; prints JSON.",
        discussion: """
            Replays the samples one rank asks for, epoch after epoch, through the cache's eviction \
            code with items of one size. The cache holds FRACTION × the rank's working set (the \
            samples of its virtual shards, which stay on the rank every epoch). The hit rate is \
            measured over epochs 2…E (epoch 1 starts cold). look-ahead is fed each epoch plus the \
            next, as the trainer does; belady is the optimum with the whole run known.

            Example: distrainer cache-sim --samples 50000 --ranks 4 --epochs 5 \
            --cache-fraction 0.25,0.5,0.75,1.0 --seed 1
            """)

    @Option(help: "Samples in the data set.") var samples: Int
    @Option(help: "Ranks (world size).") var ranks = 1
    @Option(help: "The rank whose cache is simulated.") var rank = 0
    @Option(help: "Epochs replayed (the first is the cold one).") var epochs = 5
    @Option(help: "Cache sizes as fractions of the rank's working set, comma-separated.") var cacheFraction = "0.25,0.5,0.75,1.0"
    @Option(help: "GLOBAL batch size.") var globalBatch = 256
    @Option(help: "Virtual shards (default: as train chooses for this batch and world size).") var virtualShards: Int?
    @Option(help: "Data-order seed.") var seed: UInt64 = 1

    func fractions() throws -> [Double] {
        let parts = cacheFraction.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.compactMap(Double.init)
        guard !values.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 0 && $0 <= 1 }) else {
            throw ValidationError("--cache-fraction takes fractions in 0...1, comma-separated (got '\(cacheFraction)')")
        }
        return values
    }

    func validate() throws {
        guard samples >= 1 else { throw ValidationError("--samples must be at least 1") }
        guard ranks >= 1, (0..<ranks).contains(rank) else { throw ValidationError("--rank must be in 0..<--ranks") }
        guard epochs >= 2 else { throw ValidationError("--epochs must be at least 2 (epoch 1 is the cold one)") }
        _ = try fractions()
    }

    func run() throws {
        let shards = virtualShards ?? ShardedSampler.defaultShards(globalBatch: globalBatch, worldSize: ranks)
        let sampler = try ShardedSampler(sampleCount: samples, globalBatch: globalBatch, virtualShards: shards, seed: seed)
        try sampler.validate(worldSize: ranks)
        let order = (0..<epochs).map { sampler.accessOrder(rank: rank, worldSize: ranks, epoch: $0) }
        let workingSet = sampler.workingSet(rank: rank, worldSize: ranks).count

        var results: [[String: Any]] = []
        for f in try fractions() {
            let capacity = Int((f * Double(workingSet)).rounded())
            var row: [String: Any] = ["cache_fraction": f, "capacity_items": capacity]
            var perEpoch: [String: [Double]] = [:]
            for policy in CacheSimulation.Policy.allCases {
                let rates = CacheSimulation.hitRates(epochs: order, capacity: capacity, policy: policy)
                let measured = zip(rates, order).dropFirst()
                let hits = measured.reduce(0.0) { $0 + $1.0 * Double($1.1.count) }
                let total = measured.reduce(0) { $0 + $1.1.count }
                row[policy.rawValue.replacingOccurrences(of: "-", with: "_")] = Self.round(total == 0 ? 0 : hits / Double(total))
                perEpoch[policy.rawValue.replacingOccurrences(of: "-", with: "_")] = rates.map(Self.round)
            }
            row["per_epoch"] = perEpoch
            results.append(row)
        }
        let report: [String: Any] = [
            "samples": samples, "ranks": ranks, "rank": rank, "epochs": epochs, "seed": seed,
            "global_batch": globalBatch, "virtual_shards": shards, "working_set": workingSet,
            "hit_rate_epochs": "2-\(epochs)", "results": results,
        ]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys, .prettyPrinted])
        print(String(decoding: data, as: UTF8.self))
    }

    static func round(_ x: Double) -> Double { (x * 10_000).rounded() / 10_000 }
}
