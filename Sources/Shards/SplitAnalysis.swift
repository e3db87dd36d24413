import Foundation
import Support

/// What `split` did, written as split_analysis.json (keys in snake_case, sorted). Every line is
/// accounted for: `lines.total = valid + rejected + blank`, and `valid` = the filters'
/// `records_removed` + `dedup.duplicate_records_removed` + `label_conflicts.records_removed` +
/// the records of the outputs.
public struct SplitAnalysis: Codable, Sendable, Equatable {
    public struct Fields: Codable, Sendable, Equatable {
        public var image: String
        public var label: String
        public var group: String?
    }

    public struct Lines: Codable, Sendable, Equatable {
        /// Lines in the file, blank ones included.
        public var total: Int
        public var blank: Int
        /// Records that passed validation.
        public var valid: Int
        public var rejected: Int
    }

    public struct Rejected: Codable, Sendable, Equatable {
        /// `error` or `skip`.
        public var policy: String
        public var total: Int
        public var byReason: [String: Int]
        /// The file listing the rejected lines (with `skip`), relative to the output folder.
        public var file: String?
        enum CodingKeys: String, CodingKey { case policy, total, file; case byReason = "by_reason" }
    }

    /// One filter's effect, in the order applied.
    public struct Filter: Codable, Sendable, Equatable {
        /// `region`, `license`, `min_per_class` or `max_per_class`.
        public var name: String
        public var enabled: Bool
        /// The setting as given (e.g. `EU_SW,EU_NE`, `production-only`, `5`).
        public var setting: String?
        public var recordsBefore: Int
        public var recordsRemoved: Int
        /// Removed because the field was missing (region and license filters).
        public var recordsWithoutField: Int
        public var classesBefore: Int
        public var classesRemoved: Int
        enum CodingKeys: String, CodingKey {
            case name, enabled, setting
            case recordsBefore = "records_before", recordsRemoved = "records_removed"
            case recordsWithoutField = "records_without_field"
            case classesBefore = "classes_before", classesRemoved = "classes_removed"
        }
    }

    public struct Dedup: Codable, Sendable, Equatable {
        /// `image reference` or `image reference + content SHA-256`.
        public var key: String
        public var recordsBefore: Int
        /// Images (after dedup) that more than one record named, labels agreeing.
        public var duplicatedImages: Int
        /// Records dropped as duplicates of an earlier record with the same label.
        public var duplicateRecordsRemoved: Int
        /// Records whose reference differed from their duplicate's but whose bytes matched.
        public var contentDuplicates: Int
        /// Local images whose content could not be read (deduplicated by reference only).
        public var contentUnreadable: Int
        public var recordsAfter: Int
        enum CodingKeys: String, CodingKey {
            case key
            case recordsBefore = "records_before", duplicatedImages = "duplicated_images"
            case duplicateRecordsRemoved = "duplicate_records_removed", contentDuplicates = "content_duplicates"
            case contentUnreadable = "content_unreadable", recordsAfter = "records_after"
        }
    }

    public struct ConflictExample: Codable, Sendable, Equatable {
        public var image: String
        public var labels: [String]
        public var lines: [Int]
    }

    public struct LabelConflicts: Codable, Sendable, Equatable {
        public var policy: String
        /// Images named with more than one label.
        public var images: Int
        /// Records naming those images.
        public var records: Int
        public var recordsRemoved: Int
        /// The first conflicts in file order (at most 20).
        public var examples: [ConflictExample]
        enum CodingKeys: String, CodingKey { case policy, images, records, examples; case recordsRemoved = "records_removed" }
    }

    public struct Components: Codable, Sendable, Equatable {
        /// Sets of records kept together (sharing an image reference, content or group key).
        public var count: Int
        public var largest: Int
        public var multiRecord: Int
        /// Components holding more than one label (stratified by their most common label).
        public var multiLabel: Int
        enum CodingKeys: String, CodingKey { case count, largest; case multiRecord = "multi_record", multiLabel = "multi_label" }
    }

    public struct Output: Codable, Sendable, Equatable {
        public var name: String
        public var file: String
        public var records: Int
        public var classes: Int
        /// `ManifestFingerprint` of the file as written (re-read).
        public var fingerprint: String
    }

    public struct TinyClass: Codable, Sendable, Equatable {
        public var name: String
        public var records: Int
        public var components: Int
        /// The split each component went to, largest component first.
        public var assigned: [String]
    }

    public struct Stratification: Codable, Sendable, Equatable {
        public var rule: String
        public var classes: Int
        public var tooSmallToStratify: [TinyClass]
        /// Classes with records in val/test but none in train (possible only through components
        /// that hold several labels).
        public var missingFromTrain: [String]
        enum CodingKeys: String, CodingKey {
            case rule, classes
            case tooSmallToStratify = "too_small_to_stratify", missingFromTrain = "missing_from_train"
        }
    }

    /// Records of one class per split (in split order), as re-read from the outputs.
    public struct ClassCounts: Codable, Sendable, Equatable {
        public var name: String
        public var total: Int
        public var counts: [Int]
    }

    public struct Leakage: Codable, Sendable, Equatable {
        public var ok: Bool
        public var method: String
        public var recordsChecked: Int
        public var imagesInSeveralSplits: Int
        public var groupsInSeveralSplits: Int
        public var imagesKeptTwice: Int
        enum CodingKeys: String, CodingKey {
            case ok, method
            case recordsChecked = "records_checked", imagesInSeveralSplits = "images_in_several_splits"
            case groupsInSeveralSplits = "groups_in_several_splits", imagesKeptTwice = "images_kept_twice"
        }
    }

    public var input: String
    public var inputFingerprint: String
    public var fields: Fields
    public var seed: UInt64
    public var splits: [String]
    public var ratios: [Double]
    public var lines: Lines
    public var rejected: Rejected
    public var filters: [Filter]
    public var dedup: Dedup
    public var labelConflicts: LabelConflicts
    public var components: Components
    public var stratification: Stratification
    public var outputs: [Output]
    public var perClass: [ClassCounts]
    public var leakage: Leakage
    public var classWeights: String

    enum CodingKeys: String, CodingKey {
        case input, fields, seed, splits, ratios, lines, rejected, filters, dedup, components, stratification, outputs, leakage
        case inputFingerprint = "input_fingerprint", labelConflicts = "label_conflicts", perClass = "per_class"
        case classWeights = "class_weights"
    }

    /// Writes split_analysis.json atomically (pretty-printed, keys sorted).
    public func save(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try AtomicFile.write(try encoder.encode(self) + Data("\n".utf8), to: path)
    }

    public static func load(path: String) throws -> SplitAnalysis {
        try JSONDecoder().decode(SplitAnalysis.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }
}
