import Testing
import Shards

@Suite struct GroupedStratifierTests {
    @Test func singleRecordsAreStratifiedWithinOnePerClass() {
        let labels = (0..<1000).map { $0 % 7 == 0 ? 0 : ($0 % 3 == 0 ? 1 : 2) }
        let images = (0..<1000).map { "img\($0)" }
        let folds = GroupedStratifier.assign(labels: labels, keys: [images], weights: [1, 1, 1, 1, 1], seed: 3)
        for c in 0..<3 {
            let total = labels.filter { $0 == c }.count
            for f in 0..<5 {
                let n = zip(labels, folds).filter { $0.0 == c && $0.1 == f }.count
                #expect(abs(Double(n) - Double(total) / 5) <= 1, "class \(c) fold \(f): \(n) of \(total)")
            }
        }
    }

    @Test func sharedKeysNeverStraddleParts() {
        // Duplicated images and a group column chaining records together.
        let n = 600
        let labels = (0..<n).map { $0 % 4 }
        let images = (0..<n).map { "img\($0 % 450)" }            // records i and i+450 share an image
        let groups = (0..<n).map { $0 % 10 == 0 ? "g\($0 % 30)" : "" }
        let parts = GroupedStratifier.assign(labels: labels, keys: [images, groups], weights: [8, 1, 1], seed: 1)
        for key in [images, groups] {
            var partOf: [String: Int] = [:]
            for (i, k) in key.enumerated() where !k.isEmpty {
                if let p = partOf[k] { #expect(p == parts[i], "key \(k) straddles parts") } else { partOf[k] = parts[i] }
            }
        }
        #expect(Set(parts) == [0, 1, 2])
    }

    @Test func deterministicFromTheSeed() {
        let labels = (0..<200).map { $0 % 5 }, keys = [(0..<200).map { "r\($0)" }]
        let a = GroupedStratifier.assign(labels: labels, keys: keys, weights: [1, 1, 1], seed: 7)
        #expect(a == GroupedStratifier.assign(labels: labels, keys: keys, weights: [1, 1, 1], seed: 7))
        #expect(a != GroupedStratifier.assign(labels: labels, keys: keys, weights: [1, 1, 1], seed: 8))
    }
}
