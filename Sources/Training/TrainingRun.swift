import Foundation
import Dist
import Model
import Shards

/// Where a run starts: step 0, or the position of the run's own `last.ckpt` (rank 0 reads it;
/// every rank gets the numbers by broadcast).
struct ResumePoint {
    /// Optimizer steps already done.
    var step = 0
    var virtualShards: Int
    /// Sums of the interrupted epoch so far (loss, correct, seen) when resumed mid-epoch.
    var epochProgress: [Double] = [0, 0, 0]
    /// History lines up to `step` (rank 0 only).
    var history: [[String: Any]] = []
    /// Early stopping / best-K state (every rank: broadcast from rank 0's checkpoint).
    var control: RunControlState?
    /// The saved weight average (rank 0 only; `setUp` broadcasts it).
    var ema: [Float]?

    /// The numbers every rank needs, as broadcast from rank 0.
    var broadcastValues: [Double] { [Double(step), Double(virtualShards)] + epochProgress }
    mutating func adopt(_ v: [Double]) { step = Int(v[0]); virtualShards = Int(v[1]); epochProgress = Array(v[2...]) }
}

/// Per-epoch sums on one rank: loss, correct predictions, samples seen.
struct EpochTotals {
    var lossSum = 0.0, correct = 0.0, seen = 0.0
    var array: [Double] { [lossSum, correct, seen] }
    init() {}
    init(_ a: [Double]) { lossSum = a[0]; correct = a[1]; seen = a[2] }
}

/// One epoch in progress on this rank (or the rest of one after a resume, or part of one when
/// `--max-steps` stops the run).
struct EpochState {
    let epoch: Int
    /// Steps of this epoch run now: `firstStep..<endStep` (positions within the epoch).
    let firstStep: Int
    let endStep: Int
    /// True when the epoch runs to its last step.
    let complete: Bool
    let order: ShardedSampler.Epoch
    let started = Date()
    var totals: EpochTotals
    /// The learning rate of the latest step.
    var lr: Float
    var failures: [SampleFailure] = []
    var allreduceNanos: UInt64 = 0
    /// Of that, the time blocked waiting for it after backward (equal without overlap).
    var allreduceWaitNanos: UInt64 = 0
    /// Optimizer updates applied, gradient allreduce calls before the epoch, and the sum of the
    /// gradient norms before clipping (with --clip-grad-norm).
    var updates = 0
    let allreduceCallsBefore: Int
    var gradNormSum = 0.0
}

/// Everything one `Trainer.train` call sets up once, and where the run stands.
///
/// Memory is planned here once (activations, loss gradient, loaders' slots), so the step loop
/// allocates nothing. The optimizer and the learning-rate schedule come from the factories below.
final class TrainingRun {
    let data: TrainingData
    let format: InputFormat
    /// The run directory (rank 0 only).
    let runDir: RunDirectory?
    let spec: ModelSpec
    let net: Network
    let sampler: ShardedSampler
    let stepsPerEpoch: Int
    /// Where this call stops: all epochs, or `--max-steps`.
    let totalSteps: Int
    /// Micro-batches per optimizer step (gradient accumulation).
    let accumSteps: Int
    /// Largest per-rank training micro-batch, and the per-rank evaluation batch.
    let maxLocal: Int
    let evalLocal: Int
    let reducer: BucketedAllreduce
    /// Backward-driven bucket starts (with `--overlap-allreduce on`).
    let overlap: OverlappedReduction?
    let optimizer: SGD
    let schedule: LearningRateSchedule
    let cache: ImageCache
    let trainSource: ImageSampleSource
    let trainLoader: BatchLoader
    let valLoader: BatchLoader?
    /// Loss gradient and predicted classes, sized for the larger of the two batches.
    let dLogits: UnsafeMutablePointer<Float>
    let predicted: UnsafeMutablePointer<Int32>
    let progress: ProgressLine
    /// The metric best.ckpt, best-K and early stopping follow.
    let metric: String
    /// The exponential moving average of the weights (with --ema-decay).
    let ema: WeightAverage?

    /// Optimizer steps done: the single source of truth for the position (epoch = step / stepsPerEpoch).
    var globalStep: Int
    /// History lines so far (rank 0).
    var history: [[String: Any]]
    /// Best `metric`, best-K ranking and early stopping (identical on every rank).
    var control: RunControlState
    /// Sums of an interrupted epoch that the next epoch continues (rank 0 carries the resumed ones).
    var carried: EpochTotals
    var lastValAccuracy: Double?

    var classes: Int { data.classes.count }
    var isRoot: Bool { runDir != nil }

    init(options o: TrainOptions, comm: Communicator, data: TrainingData, format: InputFormat, runDir: RunDirectory?,
         spec: ModelSpec, net: Network, sampler: ShardedSampler, start: ResumePoint) throws {
        let metric = try o.runControl.resolvedMonitor(hasValidation: data.val != nil)
        self.metric = metric
        self.data = data; self.format = format; self.runDir = runDir; self.spec = spec; self.net = net; self.sampler = sampler
        let world = comm.size
        let shardsPerRank = sampler.virtualShards / world
        accumSteps = o.runControl.accumSteps
        // A step's share on this rank, split into `accumSteps` micro-batches.
        let stepLocal = min(o.stepBatch, (o.stepBatch / sampler.virtualShards + 1) * shardsPerRank)
        let maxLocal = (stepLocal + accumSteps - 1) / accumSteps
        let evalLocal = max(1, o.evalBatchSize / world)
        self.maxLocal = maxLocal; self.evalLocal = evalLocal
        stepsPerEpoch = sampler.stepsPerEpoch
        totalSteps = min(o.maxSteps ?? Int.max, stepsPerEpoch * o.epochs)
        // This rank's own byte-bounded image cache (a limit too small for one batch fails here).
        let cache = try ImageCache(options: o.cacheOptions(rank: MPIRuntime.isActive ? MPIRuntime.worldRank : comm.rank,
                                                           localBatch: max(maxLocal, evalLocal)))
        self.cache = cache
        net.prepare(maxBatch: max(maxLocal, evalLocal))
        reducer = BucketedAllreduce(count: net.store.count, bucketElements: o.bucketElements, communicator: comm)
        overlap = o.overlapAllreduce ? OverlappedReduction(reducer: reducer, network: net) : nil
        optimizer = Self.makeOptimizer(o)
        schedule = Self.makeSchedule(o, stepsPerEpoch: sampler.stepsPerEpoch)
        trainSource = ImageSampleSource(set: data.train, format: format, cache: cache)
        trainLoader = BatchLoader(source: trainSource, maxBatch: maxLocal,
                                  prefetch: o.prefetch, workers: o.loaderThreads, skipFailures: o.skipsFailures)
        valLoader = data.val.map { BatchLoader(source: ImageSampleSource(set: $0, format: format, cache: cache), maxBatch: evalLocal,
                                               prefetch: o.prefetch, workers: o.loaderThreads, skipFailures: o.skipsFailures) }
        dLogits = .allocate(capacity: max(maxLocal, evalLocal) * data.classes.count)
        predicted = .allocate(capacity: max(maxLocal, evalLocal))
        progress = ProgressLine(enabled: runDir != nil && o.progress && isatty(STDERR_FILENO) == 1)
        ema = o.runControl.emaDecay.map { WeightAverage(decay: $0, store: net.store) }
        if let ema, let saved = start.ema { ema.load(saved) }
        globalStep = start.step
        history = start.history
        carried = EpochTotals(runDir != nil ? start.epochProgress : [0, 0, 0])
        if let c = start.control, c.monitor == metric {
            control = c
        } else {
            // A new run, or one whose checkpoint predates run-control state: rebuild it from the history.
            var c = RunControlState(monitor: metric)
            for h in start.history where h["partial"] == nil {
                if let m = h[metric] as? Double { _ = c.record(epoch: h["epoch"] as? Int ?? 0, value: m, options: RunControlOptions()) }
            }
            control = c
        }
    }

    deinit { dLogits.deallocate(); predicted.deallocate() }

    /// Stops the loaders' threads (they keep their loaders alive until then).
    func shutdown() { trainLoader.shutdown(); valLoader?.shutdown() }

    // MARK: factories (one place each for what the options choose)

    /// The optimizer the options ask for.
    static func makeOptimizer(_ o: TrainOptions) -> SGD {
        SGD(momentum: o.momentum, weightDecay: o.weightDecay, nesterov: o.nesterov)
    }

    /// The learning-rate schedule: it spans all epochs; `--max-steps` only stops early (so a
    /// stopped run resumes on schedule).
    static func makeSchedule(_ o: TrainOptions, stepsPerEpoch: Int) -> LearningRateSchedule {
        LearningRateSchedule(kind: o.schedule, baseLR: o.lr, totalSteps: stepsPerEpoch * o.epochs, floor: o.lrFloor)
    }

    /// The loss of one training batch: loss sum and correct predictions; writes dLogits scaled by
    /// `gradScale` (1/global batch).
    func loss(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, gradScale: Float) -> (lossSum: Double, correct: Int) {
        let r = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes,
                                             gradScale: gradScale, dLogits: dLogits)
        return (r.lossSum, r.correct)
    }
}
