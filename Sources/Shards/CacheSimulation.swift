/// Replays a rank's access sequence through the cache's eviction machinery (`TierIndex`,
/// `AccessPlan`) with items of one size, to compare policies before paying for a cache.
///
///     let epochs = (0..<5).map { sampler.accessOrder(rank: 0, worldSize: 4, epoch: $0) }
///     let rates = CacheSimulation.hitRates(epochs: epochs, capacity: 1000, policy: .lookAhead)
///
/// Policies:
/// - `lru`: the cache's LRU policy.
/// - `lookAhead`: the cache's look-ahead policy fed as a trainer feeds it — at each epoch
///   start, the plan is that epoch followed by the next (`CachedImageSource.planEpoch`); every
///   miss is admitted (as in `ImageCache`).
/// - `belady`: Belady's optimum (MIN) for the whole run: the plan is every epoch, and on a
///   miss the incoming item is itself a candidate — it is not admitted when its next use is
///   farther than that of every resident item. With uniform sizes no policy does better.
public enum CacheSimulation {
    public enum Policy: String, CaseIterable, Sendable {
        case lru
        case lookAhead = "look-ahead"
        case belady
    }

    /// The hit rate of each epoch (hits / accesses) for a cache of `capacity` items.
    public static func hitRates(epochs: [[Int]], capacity: Int, policy: Policy) -> [Double] {
        guard capacity > 0 else { return epochs.map { _ in 0 } }
        var tier = TierIndex<Int>(capacity: capacity, policy: policy == .lru ? .lru : .lookAhead)
        var plan = AccessPlan<Int>()
        if policy == .belady { plan = AccessPlan(epochs.flatMap { $0 }) }
        var rates: [Double] = []
        for (e, sequence) in epochs.enumerated() {
            if policy == .lookAhead {
                plan = AccessPlan(sequence + (e + 1 < epochs.count ? epochs[e + 1] : []))
                tier.replanAll { plan.nextUse($0) }
            }
            var hits = 0
            for key in sequence {
                plan.consume(key)
                let next = plan.nextUse(key)
                if tier.contains(key) {
                    hits += 1
                    tier.touch(key, nextUse: next)
                    continue
                }
                if policy == .belady, tier.used + 1 > capacity, let victim = tier.peekVictim(), next >= victim.nextUse {
                    continue   // the incoming item is the one used farthest in the future
                }
                _ = tier.insert(key, size: 1, nextUse: next)
            }
            rates.append(sequence.isEmpty ? 0 : Double(hits) / Double(sequence.count))
        }
        return rates
    }

    /// Hits / accesses over `epochs[from...]` (e.g. from 1: the epochs after the cold one).
    public static func hitRate(epochs: [[Int]], capacity: Int, policy: Policy, from: Int) -> Double {
        let rates = hitRates(epochs: epochs, capacity: capacity, policy: policy)
        var hits = 0.0, total = 0
        for e in from..<epochs.count {
            hits += rates[e] * Double(epochs[e].count)
            total += epochs[e].count
        }
        return total == 0 ? 0 : hits / Double(total)
    }
}
