import Foundation

/// Metrics derived from globally reduced counts, as scikit-learn defines them: from the confusion
/// matrix (rows = true class, columns = predicted) precision, recall and F1 per class (0 where
/// undefined), macro averages over the labels present in y_true or y_pred, support-weighted
/// averages, balanced accuracy (mean recall over classes that have samples); from the rank of the
/// true class, top-k accuracy (`top_k_accuracy_score`, k capped at the class count); from the
/// confidence histogram, the expected calibration error.
public struct ClassificationMetrics: Sendable {
    public var count: Int64
    public var accuracy: Double
    public var macroPrecision: Double
    public var macroRecall: Double
    public var macroF1: Double
    public var weightedPrecision: Double
    public var weightedRecall: Double
    public var weightedF1: Double
    public var balancedAccuracy: Double
    public var precision: [Double]
    public var recall: [Double]
    public var f1: [Double]
    public var support: [Int64]
    public var confusion: [[Int64]]
    /// See `EvaluationResult.trueClassRanks` (empty when not known).
    public var trueClassRanks: [Int64]
    public var calibration: CalibrationBins?

    /// The k values reported as top1, top3, top5.
    public static let topKs = [1, 3, 5]

    public init(confusion: [[Int64]], trueClassRanks: [Int64] = [], calibration: CalibrationBins? = nil) {
        let k = confusion.count
        let support = confusion.map { $0.reduce(0, +) }
        let predicted = (0..<k).map { j in confusion.reduce(Int64(0)) { $0 + $1[j] } }
        let total = support.reduce(0, +)
        var precision = [Double](repeating: 0, count: k), recall = precision, f1 = precision
        for c in 0..<k {
            let tp = Double(confusion[c][c])
            precision[c] = predicted[c] > 0 ? tp / Double(predicted[c]) : 0
            recall[c] = support[c] > 0 ? tp / Double(support[c]) : 0
            let s = precision[c] + recall[c]
            f1[c] = s > 0 ? 2 * precision[c] * recall[c] / s : 0
        }
        let present = (0..<k).filter { support[$0] > 0 }
        count = total
        accuracy = total > 0 ? Double((0..<k).reduce(Int64(0)) { $0 + confusion[$1][$1] }) / Double(total) : 0
        // scikit-learn's macro average runs over the labels present in y_true or y_pred.
        let labels = (0..<k).filter { support[$0] > 0 || predicted[$0] > 0 }
        func macro(_ v: [Double]) -> Double { labels.isEmpty ? 0 : labels.map { v[$0] }.reduce(0, +) / Double(labels.count) }
        func weighted(_ v: [Double]) -> Double {
            total > 0 ? (0..<k).map { v[$0] * Double(support[$0]) }.reduce(0, +) / Double(total) : 0
        }
        macroPrecision = macro(precision); macroRecall = macro(recall); macroF1 = macro(f1)
        weightedPrecision = weighted(precision); weightedRecall = weighted(recall); weightedF1 = weighted(f1)
        balancedAccuracy = present.isEmpty ? 0 : present.map { recall[$0] }.reduce(0, +) / Double(present.count)
        self.precision = precision; self.recall = recall; self.f1 = f1; self.support = support
        self.confusion = confusion; self.trueClassRanks = trueClassRanks; self.calibration = calibration
    }

    /// Fraction of samples whose true class is among the `k` most probable (k capped at the
    /// class count); nil without rank counts.
    public func topK(_ k: Int) -> Double? {
        guard !trueClassRanks.isEmpty, count > 0 else { return nil }
        return Double(trueClassRanks.prefix(min(k, trueClassRanks.count)).reduce(0, +)) / Double(count)
    }

    /// Expected calibration error (nil without the confidence histogram).
    public var ece: Double? { calibration?.expectedCalibrationError }

    /// Each row of the confusion matrix divided by its support (rows without samples stay 0).
    public var normalizedConfusion: [[Double]] {
        confusion.map { row in
            let n = row.reduce(0, +)
            return row.map { n > 0 ? Double($0) / Double(n) : 0 }
        }
    }

    /// The headline numbers by name (for metrics.json, history and summaries).
    public var summary: [String: Double] {
        var s = ["accuracy": accuracy, "macro_f1": macroF1, "weighted_f1": weightedF1, "balanced_accuracy": balancedAccuracy]
        for k in Self.topKs { if let v = topK(k) { s["top\(k)"] = v } }
        if let ece { s["ece"] = ece }
        return s
    }

    /// Per-class precision, recall, F1 and support, in class order.
    public func perClass(names: [String]) -> [[String: Any]] {
        names.indices.map { ["class": names[$0], "precision": precision[$0], "recall": recall[$0], "f1": f1[$0], "support": Int(support[$0])] }
    }

    /// A text report laid out like scikit-learn's `classification_report` (`digits` decimals).
    public func report(names: [String], digits: Int = 4) -> String {
        let width = max(names.map(\.count).max() ?? 0, "weighted avg".count, digits)
        func pad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
        func num(_ v: Double) -> String { pad(String(format: "%.\(digits)f", v), 9) }
        var out = pad("", width) + " " + ["precision", "recall", "f1-score", "support"].map { " " + pad($0, 9) }.joined() + "\n\n"
        for (i, name) in names.enumerated() {
            out += pad(name, width) + " " + " " + num(precision[i]) + " " + num(recall[i]) + " " + num(f1[i]) + " " + pad("\(support[i])", 9) + "\n"
        }
        out += "\n" + pad("accuracy", width) + " " + " " + pad("", 9) + " " + pad("", 9) + " " + num(accuracy) + " " + pad("\(count)", 9) + "\n"
        out += pad("macro avg", width) + " " + " " + num(macroPrecision) + " " + num(macroRecall) + " " + num(macroF1) + " " + pad("\(count)", 9) + "\n"
        out += pad("weighted avg", width) + " " + " " + num(weightedPrecision) + " " + num(weightedRecall) + " " + num(weightedF1) + " "
            + pad("\(count)", 9) + "\n"
        return out
    }
}
