import Support

/// How `split` shares one class's components (sets of records that must stay together) among
/// the splits. Deterministic from the random source it is given.
///
/// - A class with at least as many components as splits is *stratified*: its record count `n`
///   is apportioned to the splits by largest remainder (`floor(n·ratio)` each, then one more to
///   the largest fractional parts, ties broken by a seeded order), and components are placed
///   largest first (ties in seeded order) into the split furthest below its target (ties: the
///   earlier split). With single-record components every split gets exactly its target, so each
///   split's count is within ±1 of `n·ratio`.
/// - A class with fewer components than splits is *too small to stratify*: its components,
///   largest first, go to train, then val, then test (one each). Never an error.
public enum SplitAssignment {
    /// Largest-remainder apportionment of `n` over integer `weights` (at least one positive).
    /// Equal remainders are broken by `tieOrder` (a permutation of the split indices; earlier wins).
    public static func apportion(_ n: Int, weights: [Int], tieOrder: [Int]) -> [Int] {
        let total = weights.reduce(0, +)
        var counts = weights.map { n * $0 / total }
        var left = n - counts.reduce(0, +)
        let rank = Dictionary(uniqueKeysWithValues: tieOrder.enumerated().map { ($0.element, $0.offset) })
        let order = weights.indices.sorted { a, b in
            let ra = n * weights[a] % total, rb = n * weights[b] % total
            return ra != rb ? ra > rb : rank[a, default: a] < rank[b, default: b]
        }
        for s in order where left > 0 { counts[s] += 1; left -= 1 }
        return counts
    }

    /// The split index of each component of one class, given the components' record counts.
    public static func assign(sizes: [Int], weights: [Int], rng: inout RandomSource) -> [Int] {
        let splits = weights.count
        // Largest first; equal sizes in a seeded order.
        let shuffled = rng.permutation(sizes.count)
        let order = shuffled.enumerated().sorted { a, b in
            sizes[a.element] != sizes[b.element] ? sizes[a.element] > sizes[b.element] : a.offset < b.offset
        }.map(\.element)
        var result = Array(repeating: 0, count: sizes.count)
        if sizes.count < splits {
            for (slot, c) in order.enumerated() { result[c] = slot }
            return result
        }
        let targets = apportion(sizes.reduce(0, +), weights: weights, tieOrder: rng.permutation(splits))
        var filled = Array(repeating: 0, count: splits)
        for c in order {
            var best = 0
            for s in 1..<splits where targets[s] - filled[s] > targets[best] - filled[best] { best = s }
            result[c] = best
            filled[best] += sizes[c]
        }
        return result
    }
}
