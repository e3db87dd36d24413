/// Metrics derived from a confusion matrix (rows = true class, columns = predicted), as
/// scikit-learn defines them: precision, recall and F1 per class (0 where undefined), macro and
/// support-weighted F1, balanced accuracy (mean recall over classes that have samples).
public struct ClassificationMetrics: Sendable {
    public var count: Int64
    public var accuracy: Double
    public var macroF1: Double
    public var weightedF1: Double
    public var balancedAccuracy: Double
    public var precision: [Double]
    public var recall: [Double]
    public var f1: [Double]
    public var support: [Int64]

    public init(confusion: [[Int64]]) {
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
        macroF1 = labels.isEmpty ? 0 : labels.map { f1[$0] }.reduce(0, +) / Double(labels.count)
        weightedF1 = total > 0 ? (0..<k).map { f1[$0] * Double(support[$0]) }.reduce(0, +) / Double(total) : 0
        balancedAccuracy = present.isEmpty ? 0 : present.map { recall[$0] }.reduce(0, +) / Double(present.count)
        self.precision = precision; self.recall = recall; self.f1 = f1; self.support = support
    }

    /// The headline numbers by name (for metrics.json and summaries).
    public var summary: [String: Double] {
        ["accuracy": accuracy, "macro_f1": macroF1, "weighted_f1": weightedF1, "balanced_accuracy": balancedAccuracy]
    }
}
