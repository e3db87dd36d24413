import Foundation

/// What `split` does with records that share an image (by reference or, with content dedup,
/// by SHA-256) but carry different labels — e.g. the same photo filed under two species.
public enum LabelConflictPolicy: String, Sendable, CaseIterable {
    /// Keep the first record (in file order), drop the others.
    case keepFirst = "keep-first"
    /// Drop every record of that image.
    case drop
    /// Stop with `file:line: label conflict`.
    case error
}

/// Errors from `Split.run` other than bad manifest lines (those are `ManifestError`).
public enum SplitError: Error, CustomStringConvertible, Equatable {
    /// An option is out of range or inconsistent.
    case invalidOption(String)
    /// An output could not be prepared or written.
    case output(path: String, reason: String)
    /// Re-reading the written outputs found an image or group in two splits, or an image twice
    /// (a bug: the outputs are left in place for inspection, with split_analysis.json).
    case leakage(String)

    public var description: String {
        switch self {
        case let .invalidOption(m): return m
        case let .output(p, r): return "\(p): \(r)"
        case let .leakage(m): return "leakage check failed: \(m)"
        }
    }
}

/// Everything `split` needs: input, outputs, field mapping, policies, filters.
///
///     var o = SplitOptions(input: "raw.jsonl", outDir: "splits")
///     o.manifest = ManifestOptions(imageField: "image_url", labelField: "latin_name", onBadRecord: .skip)
///     o.ratios = [0.8, 0.1, 0.1]
///     let analysis = try Split.run(o)
public struct SplitOptions: Sendable {
    public var input: String
    public var outDir: String
    /// Shares of train, val (and test); 2 or 3 positive numbers summing to 1.
    public var ratios: [Double] = [0.8, 0.1, 0.1]
    public var seed: UInt64 = 1
    /// Field mapping and bad-record policy for the input.
    public var manifest = ManifestOptions()
    public var onLabelConflict: LabelConflictPolicy = .keepFirst
    /// Also treat local files with identical bytes (SHA-256) as duplicates.
    public var dedupContent = false
    /// Keep only records whose `region` is one of these (exact match); nil keeps all.
    public var regions: [String]?
    /// Keep only records whose licence, normalised by `Licenses.normalize`, is one of these
    /// (normalised too); nil keeps all. `--production-only` sets `Licenses.permissive`.
    public var licenses: [String]?
    /// Drop classes with fewer records (after dedup).
    public var minPerClass: Int?
    /// Subsample classes with more records to this many (seeded).
    public var maxPerClass: Int?
    /// β of the effective-number class weights.
    public var beta: Double = 0.999

    public init(input: String, outDir: String) {
        self.input = input
        self.outDir = outDir
    }

    /// The output names in split order: train, val (and test).
    public var splitNames: [String] { Array(["train", "val", "test"].prefix(ratios.count)) }

    public func validate() throws {
        guard ratios.count == 2 || ratios.count == 3 else {
            throw SplitError.invalidOption("--ratios needs 2 or 3 values (train,val[,test]), got \(ratios.count)")
        }
        guard ratios.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw SplitError.invalidOption("--ratios must all be positive, got \(ratios.map { "\($0)" }.joined(separator: ","))")
        }
        let sum = ratios.reduce(0, +)
        guard abs(sum - 1) <= 1e-6 else {
            throw SplitError.invalidOption("--ratios must sum to 1, got \(sum)")
        }
        if let m = minPerClass, m < 1 { throw SplitError.invalidOption("--min-per-class must be >= 1, got \(m)") }
        if let m = maxPerClass, m < 1 { throw SplitError.invalidOption("--max-per-class must be >= 1, got \(m)") }
        if let lo = minPerClass, let hi = maxPerClass, lo > hi {
            throw SplitError.invalidOption("--min-per-class (\(lo)) is larger than --max-per-class (\(hi))")
        }
        guard beta >= 0, beta < 1 else { throw SplitError.invalidOption("--beta must be in [0, 1), got \(beta)") }
        if let r = regions, r.isEmpty { throw SplitError.invalidOption("--region needs at least one region") }
        if let l = licenses, l.isEmpty { throw SplitError.invalidOption("--license-allow needs at least one licence") }
        if manifest.imageField.isEmpty || manifest.labelField.isEmpty || manifest.groupField == "" {
            throw SplitError.invalidOption("field names must not be empty")
        }
    }

    /// The ratios as integer weights (parts per million), so apportionment is exact.
    var weights: [Int] { ratios.map { max(1, Int(($0 * 1_000_000).rounded())) } }
}
