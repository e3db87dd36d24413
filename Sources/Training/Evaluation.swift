import Dist
import Foundation
import Model
import Shards

/// Loss and counts over a whole labelled set, each sample counted exactly once across ranks:
/// rank r evaluates the contiguous shard r of W (no padding), then the counts are summed.
///
/// Everything but the loss is an integer count (the calibration bins hold confidences in fixed
/// point, `CalibrationBins.scale`), so the reduced result — and every metric derived from it —
/// is the same on any number of ranks, whatever the order of the sums.
public struct EvaluationResult: Sendable {
    public var lossSum: Double
    /// [true class][predicted class] counts, summed over ranks.
    public var confusion: [[Int64]]
    /// `trueClassRanks[r]`: samples whose true class had the r-th highest probability (0 = the
    /// prediction; ties go to the lower class index, as the arg-max does). Top-k hits are the
    /// sum of the first k entries.
    public var trueClassRanks: [Int64]
    /// Confidence (max probability) histogram for the expected calibration error.
    public var calibration: CalibrationBins
    /// Samples that could not be loaded (with --skip-bad-records), over all ranks.
    public var skipped: Int
    public var failures: [SampleFailure]
    /// This rank's per-sample predictions (only when asked for).
    public var predictions: [Prediction] = []

    /// One sample's prediction: dataset index, arg-max class, softmax probabilities.
    public struct Prediction: Codable, Sendable {
        public var index: Int
        public var predicted: Int
        public var probabilities: [Float]
    }

    public var count: Int64 { confusion.reduce(0) { $0 + $1.reduce(0, +) } }
    public var correct: Int64 { confusion.indices.reduce(0) { $0 + confusion[$1][$1] } }
    public var accuracy: Double { count > 0 ? Double(correct) / Double(count) : 0 }
    public var meanLoss: Double { count > 0 ? lossSum / Double(count) : 0 }

    public init(counts: EvaluationCounts, lossSum: Double, failures: [SampleFailure], predictions: [Prediction] = []) {
        self.lossSum = lossSum; confusion = counts.confusionRows; trueClassRanks = counts.trueClassRanks
        calibration = counts.calibration; skipped = Int(counts.skipped); self.failures = failures; self.predictions = predictions
    }
    /// All metrics of the result.
    public var metrics: ClassificationMetrics {
        ClassificationMetrics(confusion: confusion, trueClassRanks: trueClassRanks, calibration: calibration)
    }
}

/// What evaluation counts per sample, summable over ranks: the confusion matrix, the rank of the
/// true class, the confidence histogram, and samples that could not be loaded.
public struct EvaluationCounts: Sendable, Equatable {
    public let classes: Int
    /// [true class * classes + predicted class].
    public var confusion: [Int64]
    public var trueClassRanks: [Int64]
    public var calibration = CalibrationBins()
    public var skipped: Int64 = 0

    public init(classes: Int) {
        self.classes = classes
        confusion = Array(repeating: 0, count: classes * classes)
        trueClassRanks = Array(repeating: 0, count: classes)
    }

    /// Counts one sample from its class probabilities `p` (`classes` values) and true class;
    /// returns the prediction (the first most probable class).
    @discardableResult
    public mutating func add(probabilities p: UnsafePointer<Float>, label: Int) -> Int {
        var arg = 0
        for k in 1..<max(classes, 1) where p[k] > p[arg] { arg = k }
        let pt = p[label]
        var rank = 0
        for k in 0..<classes where p[k] > pt || (p[k] == pt && k < label) { rank += 1 }
        confusion[label * classes + arg] += 1
        trueClassRanks[rank] += 1
        calibration.add(confidence: p[arg], correct: arg == label)
        return arg
    }

    @discardableResult
    public mutating func add(probabilities: [Float], label: Int) -> Int {
        precondition(probabilities.count == classes)
        return probabilities.withUnsafeBufferPointer { add(probabilities: $0.baseAddress!, label: label) }
    }

    /// The sums over every rank of `comm` (one allreduce).
    public func reduced(over comm: Communicator) throws -> EvaluationCounts {
        var r = self
        let flat = try comm.allreduce(confusion + trueClassRanks + calibration.flat + [skipped], op: .sum)
        let k2 = classes * classes
        r.confusion = Array(flat[0..<k2])
        r.trueClassRanks = Array(flat[k2..<(k2 + classes)])
        r.calibration = CalibrationBins(flat: flat[(k2 + classes)..<(flat.count - 1)])
        r.skipped = flat[flat.count - 1]
        return r
    }

    public var confusionRows: [[Int64]] { (0..<classes).map { Array(confusion[($0 * classes)..<(($0 + 1) * classes)]) } }
    public var metrics: ClassificationMetrics {
        ClassificationMetrics(confusion: confusionRows, trueClassRanks: trueClassRanks, calibration: calibration)
    }
}

/// Counts of (confidence, correct) pairs in equal-width bins over [0, 1]: bin b holds
/// confidences in (b/B, (b+1)/B] (a confidence of 0 falls in bin 0). Confidence sums are kept in
/// fixed point (units of 1/`scale`) so sums over ranks are exact.
public struct CalibrationBins: Sendable, Equatable {
    public static let defaultBins = 15
    /// Fixed-point unit of the confidence sums: 2^32 (exact for up to 2^31 samples).
    public static let scale = 4_294_967_296.0
    public var count: [Int64]
    public var correct: [Int64]
    public var confidenceSum: [Int64]

    public init(bins: Int = defaultBins) {
        count = Array(repeating: 0, count: bins); correct = count; confidenceSum = count
    }

    public var bins: Int { count.count }

    public static func bin(of confidence: Double, bins: Int) -> Int {
        min(bins - 1, max(0, Int((confidence * Double(bins)).rounded(.up)) - 1))
    }

    public mutating func add(confidence: Float, correct isCorrect: Bool) {
        let c = min(max(Double(confidence), 0), 1)
        let b = Self.bin(of: c, bins: bins)
        count[b] += 1
        if isCorrect { correct[b] += 1 }
        confidenceSum[b] += Int64((c * Self.scale).rounded())
    }

    /// Σ_b (n_b / N) · |accuracy_b − mean confidence_b| (Guo et al. 2017).
    public var expectedCalibrationError: Double {
        let n = count.reduce(0, +)
        guard n > 0 else { return 0 }
        var sum = 0.0
        for b in 0..<bins where count[b] > 0 {
            sum += abs(Double(correct[b]) - Double(confidenceSum[b]) / Self.scale)
        }
        return sum / Double(n)
    }

    /// Per bin: bounds, sample count, accuracy and mean confidence (a reliability diagram).
    public var table: [[String: Any]] {
        (0..<bins).map { b in
            var row: [String: Any] = ["lower": Double(b) / Double(bins), "upper": Double(b + 1) / Double(bins), "count": Int(count[b])]
            if count[b] > 0 {
                row["accuracy"] = Double(correct[b]) / Double(count[b])
                row["confidence"] = Double(confidenceSum[b]) / Self.scale / Double(count[b])
            }
            return row
        }
    }

    var flat: [Int64] { count + correct + confidenceSum }
    init(flat: ArraySlice<Int64>) {
        let n = flat.count / 3, s = flat.startIndex
        count = Array(flat[s..<(s + n)]); correct = Array(flat[(s + n)..<(s + 2 * n)]); confidenceSum = Array(flat[(s + 2 * n)...])
    }
}

enum Evaluation {
    /// Which predictions `run` keeps.
    enum Collect { case none, all, misclassified }

    /// The contiguous part of `count` samples that rank `rank` of `size` evaluates.
    static func shard(count: Int, rank: Int, size: Int) -> Range<Int> {
        (rank * count / size)..<((rank + 1) * count / size)
    }

    /// Runs `net` in eval mode over this rank's shard of `setCount` samples and reduces the counts.
    /// With `tta`, each sample's probabilities are the mean of those of the image and its
    /// horizontal mirror (the loss is then −log of the averaged probability of the true class).
    static func run(_ net: Network, loader: BatchLoader, setCount: Int, classes: Int, localBatch: Int,
                    comm: Communicator, scratch: UnsafeMutablePointer<Int32>, tta: Bool = false,
                    collect: Collect = .none) throws -> EvaluationResult {
        var counts = EvaluationCounts(classes: classes)
        var lossSum = 0.0
        var predictions: [EvaluationResult.Prediction] = []
        let shard = shard(count: setCount, rank: comm.rank, size: comm.size)
        let failures = try predict(net, loader: loader, shard: shard, classes: classes, localBatch: localBatch, tta: tta,
                                   labels: true) { batch, probabilities, batchLoss in
            lossSum += batchLoss
            for j in 0..<batch.count {
                let p = probabilities + j * classes
                let label = Int(batch.labels[j])
                let arg = counts.add(probabilities: p, label: label)
                scratch[j] = Int32(arg)
                if collect == .all || (collect == .misclassified && arg != label) {
                    predictions.append(.init(index: batch.indices[j], predicted: arg,
                                             probabilities: Array(UnsafeBufferPointer(start: p, count: classes))))
                }
            }
        }
        counts.skipped = Int64(failures.count)
        counts = try counts.reduced(over: comm)
        lossSum = try comm.allreduce([lossSum], op: .sum)[0]
        return EvaluationResult(counts: counts, lossSum: lossSum, failures: failures, predictions: predictions)
    }

    /// Runs `net` over the samples `shard` (this rank's, in order) and calls `body` with each
    /// batch, its class probabilities ([count][classes]) and its loss sum (0 without `labels`).
    /// Returns the samples the loader could not produce. Buffers are allocated once per call.
    static func predict(_ net: Network, loader: BatchLoader, shard: Range<Int>, classes: Int, localBatch: Int, tta: Bool,
                        labels: Bool,
                        body: (LoadedBatch, UnsafePointer<Float>, Double) throws -> Void) throws -> [SampleFailure] {
        var batches: [[Int]] = []
        var i = shard.lowerBound
        while i < shard.upperBound {
            let end = min(i + localBatch, shard.upperBound)
            batches.append(Array(i..<end)); i = end
        }
        let probabilities = UnsafeMutablePointer<Float>.allocate(capacity: max(1, localBatch * classes))
        let mirrored = UnsafeMutablePointer<Float>.allocate(capacity: tta ? max(1, localBatch * classes) : 1)
        defer { probabilities.deallocate(); mirrored.deallocate() }
        let c = net.spec.channels, size = net.spec.imageSize
        loader.start(batches: batches)
        var failures: [SampleFailure] = []
        while let batch = try loader.next() {
            failures += batch.failures
            if batch.count > 0 {
                let logits = net.forward(batch.inputs, batch: batch.count, mode: .eval,
                                         context: StepContext(metadata: UnsafePointer(batch.metadata)))
                var loss = SoftmaxCrossEntropy.evaluate(logits: logits, labels: batch.labels, batch: batch.count, classes: classes,
                                                        probabilities: probabilities).lossSum
                if tta {
                    flipHorizontally(batch.inputs, count: batch.count * c, size: size)
                    let flipped = net.forward(batch.inputs, batch: batch.count, mode: .eval,
                                         context: StepContext(metadata: UnsafePointer(batch.metadata)))
                    _ = SoftmaxCrossEntropy.evaluate(logits: flipped, labels: batch.labels, batch: batch.count, classes: classes,
                                                     probabilities: mirrored)
                    loss = 0
                    for j in 0..<batch.count {
                        for k in 0..<classes { probabilities[j * classes + k] = 0.5 * (probabilities[j * classes + k] + mirrored[j * classes + k]) }
                        loss -= log(Double(max(probabilities[j * classes + Int(batch.labels[j])], .leastNonzeroMagnitude)))
                    }
                }
                try body(batch, probabilities, labels ? loss : 0)
            }
            loader.recycle(batch)
        }
        return failures
    }

    /// Mirrors `planes` square planes of `size`×`size` floats left to right, in place.
    static func flipHorizontally(_ x: UnsafeMutablePointer<Float>, count planes: Int, size: Int) {
        for row in 0..<(planes * size) {
            let r = x + row * size
            var a = 0, b = size - 1
            while a < b { let t = r[a]; r[a] = r[b]; r[b] = t; a += 1; b -= 1 }
        }
    }
}
