import Foundation
import Support

/// Errors computing, reading or writing class weights.
public enum ClassWeightsError: Error, CustomStringConvertible, Equatable {
    case invalidBeta(Double)
    case countMismatch(classes: Int, counts: Int)
    case negativeCount(className: String, count: Int)
    case file(path: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidBeta(b): return "class weights: beta must be in [0, 1), got \(b)"
        case let .countMismatch(c, n): return "class weights: \(c) classes but \(n) counts"
        case let .negativeCount(name, n): return "class weights: class \(JSONWriter.string(name)) has a negative count \(n)"
        case let .file(p, r): return "\(p): \(r)"
        }
    }
}

/// Per-class loss weights from the training split's class counts, for imbalanced data.
///
/// - `balanced`: inverse frequency as scikit-learn's `compute_class_weight("balanced")` defines
///   it, `n_samples / (n_classes * count_c)`.
/// - `effectiveNumber`: Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of
///   Samples": `(1 − β) / (1 − β^count_c)`, scaled so the weights sum to `n_classes`.
///
/// `n_classes` counts the classes with at least one sample; a class with a count of 0 gets
/// weight 0 in both (it cannot occur in the loss). `split` writes them to class_weights.json:
/// `{"classes": [...], "counts": [...], "balanced": [...], "effective_number": [...], "beta": β}`.
///
///     let w = try ClassWeights(classes: ["a", "b"], counts: [10, 30])
///     w.balanced          // [2.0, 0.666…]
public struct ClassWeights: Sendable, Equatable, Codable {
    /// Class names in output-index order (classes.json order).
    public var classes: [String]
    /// Training samples per class.
    public var counts: [Int]
    public var balanced: [Double]
    public var effectiveNumber: [Double]
    /// The β of the effective-number weights.
    public var beta: Double

    enum CodingKeys: String, CodingKey {
        case classes, counts, balanced, beta
        case effectiveNumber = "effective_number"
    }

    public init(classes: [String], counts: [Int], beta: Double = 0.999) throws {
        guard classes.count == counts.count else { throw ClassWeightsError.countMismatch(classes: classes.count, counts: counts.count) }
        guard beta >= 0, beta < 1 else { throw ClassWeightsError.invalidBeta(beta) }
        if let i = counts.firstIndex(where: { $0 < 0 }) { throw ClassWeightsError.negativeCount(className: classes[i], count: counts[i]) }
        self.classes = classes
        self.counts = counts
        self.beta = beta
        self.balanced = Self.balanced(counts: counts)
        self.effectiveNumber = Self.effectiveNumber(counts: counts, beta: beta)
    }

    /// `n_samples / (n_classes * count_c)`; 0 for a class with no samples.
    public static func balanced(counts: [Int]) -> [Double] {
        let present = counts.filter { $0 > 0 }.count
        let total = Double(counts.reduce(0, +))
        return counts.map { $0 > 0 ? total / (Double(present) * Double($0)) : 0 }
    }

    /// `(1 − β) / (1 − β^count_c)` normalised to sum to `n_classes`; 0 for a class with no samples.
    public static func effectiveNumber(counts: [Int], beta: Double) -> [Double] {
        let raw = counts.map { $0 > 0 ? (1 - beta) / (1 - pow(beta, Double($0))) : 0 }
        let sum = raw.reduce(0, +)
        guard sum > 0 else { return raw }
        let scale = Double(counts.filter { $0 > 0 }.count) / sum
        return raw.map { $0 * scale }
    }

    /// Writes class_weights.json atomically.
    public func save(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(try encoder.encode(self) + Data("\n".utf8), to: path)
    }

    /// Reads class_weights.json, checking that the arrays have one entry per class.
    public static func load(path: String) throws -> ClassWeights {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ClassWeightsError.file(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        let w: ClassWeights
        do { w = try JSONDecoder().decode(ClassWeights.self, from: data) } catch {
            throw ClassWeightsError.file(path: path, reason: "not a class-weights file: \(error)")
        }
        let n = w.classes.count
        guard w.counts.count == n, w.balanced.count == n, w.effectiveNumber.count == n else {
            throw ClassWeightsError.file(path: path, reason: "arrays differ in length from \"classes\" (\(n))")
        }
        return w
    }
}
