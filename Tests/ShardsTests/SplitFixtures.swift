import Foundation
import Shards
import TestSupport

/// Generated manifests for the split tests (written by the tests themselves).
enum SplitFixtures {
    /// A small deterministic generator (SplitMix64), independent of the code under test.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / 9_007_199_254_740_992.0 < p }
    }

    struct Generated {
        var lines: [String]
        /// Distinct image URLs among the good lines.
        var uniqueImages: Int
        /// URLs that appear under more than one label.
        var conflictedImages: Int
    }

    /// A JSONL export: class `c` has `sizes[c % sizes.count]` distinct images; each image is
    /// repeated (same label, same group) with probability `duplicateRate`, up to 3 extra copies;
    /// `conflicts` images are also filed once under the next class. With `groupRuns`, images
    /// of a class form observations of 1…`groupRuns` consecutive images (field `obs`). Lines are
    /// shuffled; `badLines` malformed lines are inserted at fixed places.
    static func generate(classes: Int, sizes: [Int], duplicateRate: Double, conflicts: Int = 0, groupRuns: Int = 0,
                         badLines: Int = 0, imageField: String = "image_url", labelField: String = "latin_name",
                         extra: (Int, inout Random) -> String = { _, _ in "" }, seed: UInt64 = 7) -> Generated {
        var rng = Random(state: seed)
        var records: [(url: String, label: String, group: String?)] = []
        var unique = 0, conflicted = 0
        for c in 0..<classes {
            let label = "Species \(String(format: "%04d", c))"
            var groupLeft = 0, group = 0
            for i in 0..<sizes[c % sizes.count] {
                let url = "https://img.example.org/\(c)/\(i).jpg"
                if groupRuns > 0 && groupLeft == 0 { group += 1; groupLeft = 1 + rng.below(groupRuns) }
                groupLeft -= 1
                let g = groupRuns > 0 ? "obs-\(c)-\(group)" : nil
                unique += 1
                records.append((url, label, g))
                if rng.chance(duplicateRate) { for _ in 0...rng.below(3) { records.append((url, label, g)) } }
                if conflicted < conflicts && i == 0 && c + 1 < classes {
                    conflicted += 1
                    records.append((url, "Species \(String(format: "%04d", c + 1))", g))
                }
            }
        }
        // Shuffle (Fisher–Yates).
        for i in stride(from: records.count - 1, to: 0, by: -1) { records.swapAt(i, rng.below(i + 1)) }
        var lines: [String] = []
        for (n, r) in records.enumerated() {
            var line = #"{"id": "r\#(n)", "\#(imageField)": "\#(r.url)", "\#(labelField)": "\#(r.label)""#
            if let g = r.group { line += #", "obs": "\#(g)""# }
            line += extra(n, &rng) + "}"
            lines.append(line)
        }
        for k in 0..<badLines {
            let at = min(lines.count, (k + 1) * lines.count / (badLines + 1))
            lines.insert(k % 2 == 0 ? #"{"id": "bad\#(k)", "\#(imageField)": "https://img.example.org/x.jpg", "\#(labelField)": "#
                                    : #"{"id": "bad\#(k)", "\#(imageField)": "https://img.example.org/y.jpg"}"#, at: at)
        }
        return Generated(lines: lines, uniqueImages: unique, conflictedImages: conflicted)
    }

    static func write(_ lines: [String], to path: String) throws {
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: path))
    }

    /// The records of each output split, read back as the trainer would.
    static func outputs(_ dir: URL, names: [String] = ["train", "val", "test"], options: ManifestOptions) throws -> [[ManifestRecord]] {
        var o = options
        o.onBadRecord = .error
        return try names.map { try Manifest.load(path: dir.appendingPathComponent("\($0).jsonl").path, options: o).records }
    }
}
