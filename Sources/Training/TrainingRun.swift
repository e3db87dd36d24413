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
    /// The learning-rate schedule's state (reduce-on-plateau's rate and counters).
    var scheduleState = LearningRateSchedule.initialStateVector
    /// History lines up to `step` (rank 0 only).
    var history: [[String: Any]] = []
    /// Early stopping / best-K state (every rank: broadcast from rank 0's checkpoint).
    var control: RunControlState?
    /// The saved weight average (rank 0 only; `setUp` broadcasts it).
    var ema: [Float]?

    /// The numbers every rank needs, as broadcast from rank 0.
    var broadcastValues: [Double] { [Double(step), Double(virtualShards)] + epochProgress + scheduleState }
    mutating func adopt(_ v: [Double]) {
        step = Int(v[0]); virtualShards = Int(v[1]); epochProgress = Array(v[2..<5]); scheduleState = Array(v[5...])
    }
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
/// allocates nothing. The loss, optimizer and learning-rate schedule come from TrainOptions' factories
/// (TrainOptions+Recipe.swift).
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
    let optimizer: Optimizer
    /// Changes only at epoch ends (reduce-on-plateau), identically on every rank.
    var schedule: LearningRateSchedule
    /// The metric reduce-on-plateau watches.
    let plateauMetric: String
    let lossFunction: Loss
    /// This rank's weight sum of the current step (weighted losses), allreduced in place.
    private let weightSum = UnsafeMutableBufferPointer<Double>.allocate(capacity: 1)
    /// Backward-driven bucket starts (with `--overlap-allreduce on`).
    let overlap: OverlappedReduction?
    let cache: ImageCache
    let trainSource: ImageSampleSource
    /// Mixup/cutmix of the training data (nil: off) and its soft targets [maxLocal, classes].
    let mixer: SampleMixer?
    let softTargets: UnsafeMutablePointer<Float>
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
        self.data = data; self.runDir = runDir; self.spec = spec; self.net = net; self.sampler = sampler
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
        optimizer = o.makeOptimizer()
        // The schedule spans all epochs; --max-steps only stops early (so a stopped run resumes on schedule).
        schedule = try o.makeSchedule(stepsPerEpoch: stepsPerEpoch, totalSteps: stepsPerEpoch * o.epochs, hasValidation: data.val != nil)
        schedule.setState(start.scheduleState)
        plateauMetric = o.plateauMonitor(hasValidation: data.val != nil)
        var counts = [Int](repeating: 0, count: data.classes.count)
        for l in data.train.labels { counts[Int(l)] += 1 }
        lossFunction = try Self.shareLoss(o, comm: comm, classes: data.classes, counts: counts)
        // Normalisation constants (dataset statistics from rank 0); augmentation of the training data only.
        let format = try o.normalization.resolve(format, train: data.train, cache: cache, comm: comm, skipFailures: o.skipsFailures)
        self.format = format
        let (augmenter, mixer) = o.augmentation(trainCount: data.train.count)
        self.mixer = mixer
        if mixer != nil, !lossFunction.acceptsSoftTargets {
            throw TrainingError.invalidOption("--loss \(o.loss.rawValue) takes no soft targets: it cannot be combined with mixup/cutmix")
        }
        softTargets = .allocate(capacity: mixer != nil ? maxLocal * data.classes.count : 1)
        trainSource = ImageSampleSource(set: data.train, format: format, cache: cache, metadata: spec.fusion,
                                        augmenter: augmenter, mixer: mixer)
        trainLoader = BatchLoader(source: trainSource, maxBatch: maxLocal, prefetch: o.prefetchDepth(batchFloats: maxLocal * format.sampleCount),
                                  workers: o.loaderThreads, skipFailures: o.skipsFailures)
        valLoader = data.val.map { BatchLoader(source: ImageSampleSource(set: $0, format: format, cache: cache, metadata: spec.fusion), maxBatch: evalLocal,
                                               prefetch: o.prefetchDepth(batchFloats: evalLocal * format.sampleCount),
                                               workers: o.loaderThreads, skipFailures: o.skipsFailures) }
        dLogits = .allocate(capacity: max(maxLocal, evalLocal) * data.classes.count)
        predicted = .allocate(capacity: max(maxLocal, evalLocal))
        progress = ProgressLine(enabled: runDir != nil && o.progress && isatty(STDERR_FILENO) == 1)
        ema = o.runControl.emaDecay.map { WeightAverage(decay: $0, store: net.store) }
        if let ema, let saved = start.ema { ema.load(saved, store: net.store) }
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

    deinit { dLogits.deallocate(); predicted.deallocate(); softTargets.deallocate(); weightSum.deallocate() }

    /// Stops the loaders' threads (they keep their loaders alive until then).
    func shutdown() { trainLoader.shutdown(); valLoader?.shutdown() }

    // MARK: the loss (optimizer, schedule and loss come from TrainOptions' factories)

    /// Starts a step's weight sum; `addStepWeights` adds each micro-batch (weighted losses only).
    func beginStepWeights() { weightSum[0] = 0 }
    func addStepWeights(_ batch: LoadedBatch) {
        guard lossFunction.isWeighted, batch.count > 0 else { return }
        // Soft targets (mixup/cutmix) count each sample once, as PyTorch does for probability targets.
        weightSum[0] += mixer != nil ? Double(batch.count)
            : lossFunction.weightSum(labels: batch.labels, targets: nil, batch: batch.count, classes: classes)
    }

    /// The step's loss normaliser D (see `Loss`): the global sample count, or for a weighted loss
    /// the global batch's weight sum — one 8-byte allreduce per step that every rank joins, even
    /// with no samples in this step.
    func lossNormaliser(globalCount: Int, comm: Communicator) throws -> Double {
        guard lossFunction.isWeighted else { return Double(globalCount) }
        try comm.allreduce(weightSum, op: .sum)
        return weightSum[0]
    }

    /// weighted-ce's weights from a FILE are read by rank 0 only (no shared file system needed)
    /// and broadcast; every rank then builds the same loss.
    static func shareLoss(_ o: TrainOptions, comm: Communicator, classes: [String], counts: [Int]) throws -> Loss {
        guard o.loss == .weightedCE, !TrainOptions.computedClassWeights.contains(o.classWeights), comm.size > 1 else {
            return try o.makeLoss(classes: classes, counts: counts)
        }
        var shipped = [Double](repeating: 0, count: classes.count + 1)   // [ok, weights…]
        var failure: Error?
        if comm.rank == 0 {
            do { shipped = [1] + (try o.resolvedClassWeights(classes: classes, counts: counts)).map(Double.init) } catch { failure = error }
        }
        try shipped.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
        if let failure { throw failure }
        guard shipped[0] == 1 else { throw TrainingError.coordinatorFailed("rank 0 could not read --class-weights \(o.classWeights)") }
        return try o.makeLoss(classes: classes, counts: counts, fileWeights: shipped.dropFirst().map(Float.init))
    }

    /// The loss of one training batch: loss sum (a weighted loss's numerator) and correct
    /// predictions; writes dLogits scaled by `gradScale`. With `targets` (mixup/cutmix) the loss's
    /// soft-target form (cross-entropy against the mixed distributions, weights and smoothing included).
    func loss(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, targets: UnsafePointer<Float>? = nil,
              batch: Int, gradScale: Float) -> (lossSum: Double, correct: Int) {
        let r = lossFunction.evaluate(logits: logits, labels: labels, targets: targets, batch: batch, classes: classes,
                                      gradScale: gradScale, dLogits: dLogits)
        return (r.lossSum, r.correct)
    }
}
