import Dist
import Model
import Shards

/// Loss and confusion counts over a whole labelled set, each sample counted exactly once across
/// ranks: rank r evaluates the contiguous shard r of W (no padding), then the sums are reduced.
public struct EvaluationResult: Sendable {
    public var lossSum: Double
    /// [true class][predicted class] counts, summed over ranks.
    public var confusion: [[Int64]]
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
}

enum Evaluation {
    /// Runs `net` in eval mode over this rank's shard of `set` and reduces the counts.
    static func run(_ net: Network, loader: BatchLoader, setCount: Int, classes: Int, localBatch: Int,
                    comm: Communicator, scratch: UnsafeMutablePointer<Int32>,
                    collect: Bool = false) throws -> EvaluationResult {
        let shard = (comm.rank * setCount / comm.size)..<((comm.rank + 1) * setCount / comm.size)
        var batches: [[Int]] = []
        var i = shard.lowerBound
        while i < shard.upperBound {
            let end = min(i + localBatch, shard.upperBound)
            batches.append(Array(i..<end)); i = end
        }
        loader.start(batches: batches)
        var confusion = [Int64](repeating: 0, count: classes * classes)
        var lossSum = 0.0
        var failures: [SampleFailure] = []
        var predictions: [EvaluationResult.Prediction] = []
        var probabilities = collect ? [Float](repeating: 0, count: localBatch * classes) : []
        while let batch = try loader.next() {
            failures += batch.failures
            if batch.count > 0 {
                let logits = net.forward(batch.inputs, batch: batch.count, mode: .eval,
                                         context: StepContext(metadata: UnsafePointer(batch.metadata)))
                let r = probabilities.withUnsafeMutableBufferPointer { probs in
                    SoftmaxCrossEntropy.evaluate(logits: logits, labels: batch.labels, batch: batch.count, classes: classes,
                                                 predicted: scratch, probabilities: collect ? probs.baseAddress : nil)
                }
                lossSum += r.lossSum
                for j in 0..<batch.count {
                    confusion[Int(batch.labels[j]) * classes + Int(scratch[j])] += 1
                    if collect {
                        predictions.append(.init(index: batch.indices[j], predicted: Int(scratch[j]),
                                                 probabilities: Array(probabilities[(j * classes)..<((j + 1) * classes)])))
                    }
                }
            }
            loader.recycle(batch)
        }
        confusion.append(Int64(failures.count))
        confusion = try comm.allreduce(confusion, op: .sum)
        let skipped = Int(confusion.removeLast())
        lossSum = try comm.allreduce([lossSum], op: .sum)[0]
        let rows = (0..<classes).map { Array(confusion[($0 * classes)..<(($0 + 1) * classes)]) }
        return EvaluationResult(lossSum: lossSum, confusion: rows, skipped: skipped, failures: failures, predictions: predictions)
    }
}
