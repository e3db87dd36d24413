import Support

/// Assigns records to parts (splits or folds) in given proportions, stratified by label and
/// without leakage: records that share a key (an image reference, a group value) form one
/// component (union-find), and a component always lands in one part.
///
/// Per class, the class's components are shuffled (seed) and placed largest first, each into the
/// part furthest below its target share (ties to the lower part), so with single-record
/// components every part gets its share of each class within ±1. A component whose records carry
/// several labels counts under its most frequent label (ties: lowest class index).
///
///     let folds = GroupedStratifier.assign(labels: labels, keys: [images], ratios: [1, 1, 1, 1, 1], seed: 1)
public enum GroupedStratifier {
    /// - Parameters:
    ///   - labels: class index per record.
    ///   - keys: one or more key columns (one string per record each); records equal in any
    ///     column are kept together. Empty strings never join records.
    ///   - ratios: relative part sizes (normalised).
    /// - Returns: part index per record.
    public static func assign(labels: [Int], keys: [[String]], ratios: [Double], seed: UInt64) -> [Int] {
        let n = labels.count
        precondition(keys.allSatisfy { $0.count == n } && !ratios.isEmpty)
        var uf = UnionFind(n)
        for column in keys {
            var first: [String: Int] = [:]
            for (i, k) in column.enumerated() where !k.isEmpty {
                if let j = first[k] { uf.union(i, j) } else { first[k] = i }
            }
        }
        var members: [Int: [Int]] = [:]
        for i in 0..<n { members[uf.find(i), default: []].append(i) }
        // Each component's label: the most frequent among its records.
        var byClass: [Int: [[Int]]] = [:]
        for comp in members.values.sorted(by: { $0[0] < $1[0] }) {
            var counts: [Int: Int] = [:]
            for i in comp { counts[labels[i], default: 0] += 1 }
            let label = counts.max { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key }!.key
            byClass[label, default: []].append(comp)
        }
        let total = ratios.reduce(0, +)
        let shares = ratios.map { $0 / total }
        var part = [Int](repeating: 0, count: n)
        for label in byClass.keys.sorted() {
            var comps = byClass[label]!
            var rng = RandomSource(seed: seed, stream: 0x57A7_0000 ^ UInt64(label))
            comps = rng.permutation(comps.count).map { comps[$0] }
            comps.sort { $0.count > $1.count }   // stable: equal sizes keep the shuffled order
            let classTotal = Double(comps.reduce(0) { $0 + $1.count })
            var filled = [Double](repeating: 0, count: shares.count)
            for comp in comps {
                var bestPart = 0, bestDeficit = -Double.infinity
                for p in shares.indices {
                    let deficit = shares[p] * classTotal - filled[p]
                    if deficit > bestDeficit + 1e-9 { bestDeficit = deficit; bestPart = p }
                }
                filled[bestPart] += Double(comp.count)
                for i in comp { part[i] = bestPart }
            }
        }
        return part
    }
}

/// Disjoint-set forest with path halving and union by size.
struct UnionFind {
    private var parent: [Int], size: [Int]
    init(_ n: Int) { parent = Array(0..<n); size = [Int](repeating: 1, count: n) }
    mutating func find(_ x: Int) -> Int {
        var x = x
        while parent[x] != x { parent[x] = parent[parent[x]]; x = parent[x] }
        return x
    }
    mutating func union(_ a: Int, _ b: Int) {
        var ra = find(a), rb = find(b)
        if ra == rb { return }
        if size[ra] < size[rb] { swap(&ra, &rb) }
        parent[rb] = ra; size[ra] += size[rb]
    }
}
