import Support

/// Assigns records to parts (the folds of a cross-validation) in given proportions, stratified by
/// label and without leakage: records that share a key (an image reference, a group value) form
/// one component (`UnionFind`) and a component always lands in one part. The per-class placement
/// is `SplitAssignment`'s, the same rule `split` uses (largest first into the part furthest below
/// its largest-remainder target; classes with fewer components than parts get one part each).
/// A component whose records carry several labels counts under its most frequent label (ties:
/// lowest class index).
///
///     let folds = GroupedStratifier.assign(labels: labels, keys: [images], weights: [1, 1, 1, 1, 1], seed: 1)
public enum GroupedStratifier {
    /// - Parameters:
    ///   - labels: class index per record.
    ///   - keys: key columns (one string per record each); records equal in any column are kept
    ///     together. Empty strings never join records.
    ///   - weights: relative part sizes.
    /// - Returns: part index per record.
    public static func assign(labels: [Int], keys: [[String]], weights: [Int], seed: UInt64) -> [Int] {
        let n = labels.count
        precondition(keys.allSatisfy { $0.count == n } && !weights.isEmpty)
        var uf = UnionFind(count: n)
        for column in keys {
            var first: [String: Int] = [:]
            for (i, k) in column.enumerated() where !k.isEmpty {
                if let j = first[k] { uf.union(i, j) } else { first[k] = i }
            }
        }
        var members: [Int: [Int]] = [:]
        for i in 0..<n { members[uf.find(i), default: []].append(i) }
        var byClass: [Int: [[Int]]] = [:]
        for comp in members.values.sorted(by: { $0[0] < $1[0] }) {
            var counts: [Int: Int] = [:]
            for i in comp { counts[labels[i], default: 0] += 1 }
            let label = counts.max { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key }!.key
            byClass[label, default: []].append(comp)
        }
        var part = [Int](repeating: 0, count: n)
        for label in byClass.keys.sorted() {
            let comps = byClass[label]!
            var rng = RandomSource(seed: seed, stream: 0x57A7_0000 ^ UInt64(label))
            let placed = SplitAssignment.assign(sizes: comps.map(\.count), weights: weights, rng: &rng)
            for (comp, p) in zip(comps, placed) { for i in comp { part[i] = p } }
        }
        return part
    }
}
