import Foundation
import Dist
import Model
import Shards
import Support

/// What a finished training run reports.
public struct TrainSummary: Sendable {
    public var steps: Int
    public var bestMetricName: String
    public var bestMetric: Double
    public var bestEpoch: Int
    public var finalValAccuracy: Double?
}

/// Data-parallel training over a communicator (MPI ranks, or a single process).
///
/// Every rank holds the whole model. Rank 0 reads the manifests, initialises the parameters and
/// broadcasts both. Each optimizer step processes one GLOBAL batch (`batchSize`) chosen by the
/// `ShardedSampler`; each rank back-propagates the samples of that batch that live in its virtual
/// shards, with the loss scaled by 1/(global batch), the gradient buffer is summed by a bucketed
/// allreduce, and every rank applies the same update — so N ranks compute what 1 rank would on
/// the same global batch (BatchNorm aside: it normalises over each rank's part of the batch, as
/// PyTorch DDP does). BatchNorm running statistics are averaged across ranks at the end of every
/// epoch and whenever a checkpoint is written.
///
/// The optimizer step count is the single source of truth for where the run is: epoch =
/// step / steps-per-epoch. A run resumed from `last.ckpt` (written at each epoch end, every
/// `checkpointEvery` steps, and when `maxSteps` stops the run) continues with exactly the samples
/// it would have seen, on any world size that divides the virtual shard count.
///
/// `train` is a sequence of small phases (each a method below):
///
///     setUp            run files, model (fresh / pretrained / resumed), sampler, TrainingRun
///     trainEpoch       beginEpoch → trainStep… (forwardBackward + applyUpdate) → reduceEpoch
///                      → validate → endEpoch (best metric, checkpoints, history)
///     finish           the summary
public final class Trainer {
    public let options: TrainOptions
    let comm: Communicator
    /// Where rank 0 prints progress and results.
    let log: (String) -> Void
    /// The trained network after `train` (final parameters, BatchNorm statistics averaged).
    public private(set) var network: Network?

    public init(options: TrainOptions, communicator: Communicator, log: @escaping (String) -> Void = { print($0) }) {
        self.options = options
        self.comm = communicator
        self.log = log
    }

    /// Reads the manifests on rank 0, ships them to every rank, and trains.
    public func run() throws -> TrainSummary {
        let o = options
        let classFile = o.classesFile
        let data = try DatasetExchange.share(comm) {
            let fixed = try classFile.map { try ClassList.load(path: $0) }
            var (train, classes) = try LabeledSet.load(path: o.trainManifest, classes: fixed, options: o.manifestOptions)
            train = train.limited(to: o.maxSamples)
            guard train.count > 0 else { throw TrainingError.invalidOption("\(o.trainManifest): no usable records") }
            guard classes.names.count >= 2 else {
                throw TrainingError.invalidOption("\(o.trainManifest): needs at least 2 classes, found \(classes.names.count)")
            }
            let val = try o.valManifest.map { try LabeledSet.load(path: $0, classes: classes, options: o.manifestOptions).0.limited(to: o.maxSamples) }
            return TrainingData(train: train, val: val, classes: classes.names)
        }
        return try train(data)
    }

    /// Trains on data every rank already holds (e.g. one fold of a cross-validation).
    public func train(_ data: TrainingData) throws -> TrainSummary {
        let o = options
        guard o.batchSize >= 1, o.epochs >= 1, o.evalBatchSize >= 1 else {
            throw TrainingError.invalidOption("--batch-size, --eval-batch-size and --epochs must be positive")
        }
        try o.runControl.validate()
        ComputeThreads.configure(o.threads)
        if comm.rank == 0, let warning = ComputeThreads.oversubscriptionWarning(threads: o.threads) {
            FileHandle.standardError.write(Data("distrainer: \(warning)\n".utf8))
        }
        let run = try setUp(data)
        defer { run.shutdown() }
        if run.control.stopped, comm.rank == 0 { log("this run already stopped early at step \(run.globalStep)") }
        while run.globalStep < run.totalSteps && !run.control.stopped {
            try trainEpoch(run)
        }
        return try finish(run)
    }

    // MARK: - Setup

    /// Run files, the model identical on every rank (fresh, pretrained, or the run's own last
    /// checkpoint), the sampler, and everything the loop needs.
    func setUp(_ data: TrainingData) throws -> TrainingRun {
        let o = options, isRoot = comm.rank == 0, world = comm.size
        let format = try InputFormat(channels: o.channels, imageSize: o.imageSize, mean: o.mean, std: o.std)
        let runDir: RunDirectory? = isRoot ? try RunDirectory(path: o.writeDir ?? o.outDir) : nil
        if let runDir { try writeRunFiles(data, to: runDir) }
        let (spec, net) = try buildModel(classes: data.classes.count, train: data.train)
        o.makeOptimizer().prepare(net.store)   // the state layout must be in place before a checkpoint fills it
        let start = try resumePoint(net: net, data: data, runDir: runDir)
        for buffer in [net.store.parameterBuffer, net.store.optimizerStateBuffer, net.store.stateBuffer] {
            try comm.broadcast(UnsafeMutableRawBufferPointer(buffer), root: 0)
        }
        let sampler = try ShardedSampler(sampleCount: data.train.count, globalBatch: o.stepBatch,
                                         virtualShards: start.virtualShards, seed: o.seed)
        try sampler.validate(worldSize: world)
        let run = try TrainingRun(options: o, comm: comm, data: data, format: format, runDir: runDir,
                                  spec: spec, net: net, sampler: sampler, start: start)
        // Run control and the weight average as rank 0 restored them.
        let control = try comm.broadcast(bytes: isRoot ? Array(try JSONEncoder().encode(run.control)) : [], root: 0)
        run.control = try JSONDecoder().decode(RunControlState.self, from: Data(control))
        if let ema = run.ema { try comm.broadcast(UnsafeMutableRawBufferPointer(ema.buffer), root: 0) }
        if isRoot && (o.augment.transformsImages || o.augment.mixes || o.normalization != .custom) {
            log("augmentation: \(o.augment.summary); normalisation \(o.normalization.rawValue) mean \(run.format.mean) std \(run.format.std)")
        }
        let hosts = try Placement.describe(comm)   // collective: every rank's host name to rank 0
        if isRoot {
            log("distrainer: \(world) rank(s), model \(o.model) (\(net.parameterCount) parameters), \(data.train.count) training images"
                + (data.val.map { ", \($0.count) validation images" } ?? "") + ", \(run.classes) classes, global batch \(o.stepBatch)"
                + (run.accumSteps > 1 ? " (\(run.accumSteps) × \(o.batchSize), one allreduce per step)" : "") + ", "
                + "\(sampler.virtualShards) virtual shards")
            if let hosts { log(hosts) }
        }
        return run
    }

    /// classes.json, class_weights.json, options.json and the manifests' rejected records (rank 0).
    func writeRunFiles(_ data: TrainingData, to runDir: RunDirectory) throws {
        let classNames = data.classes
        try ClassList(names: classNames).save(to: runDir.file("classes.json"))
        // Class weights of the training data (used by weighted losses), saved with the run.
        var counts = [Int](repeating: 0, count: classNames.count)
        for l in data.train.labels { counts[Int(l)] += 1 }
        try ClassWeights(classes: classNames, counts: counts).save(to: runDir.file("class_weights.json"))
        try runDir.writeJSON(options.record.merging(["train_fingerprint": data.train.fingerprint ?? ""]) { a, _ in a }, to: "options.json")
        let rejected = data.train.rejected + (data.val?.rejected ?? [])
        if !rejected.isEmpty {
            log("skipped \(rejected.count) bad manifest record(s) (--skip-bad-records):")
            for r in rejected.prefix(10) { log("  \(r)") }
            try runDir.appendLines(rejected.map { jsonLine(["reason": $0, "stage": "manifest"]) }, to: "failed_samples.jsonl")
        }
    }

    /// The model with initialised (or, on rank 0, pretrained) parameters; with `--fusion` its
    /// metadata encoding is fitted on `train`.
    func buildModel(classes: Int, train: LabeledSet) throws -> (ModelSpec, Network) {
        let o = options
        var spec = ModelSpec(architecture: o.model, channels: o.channels, imageSize: o.imageSize,
                             classes: classes, batchNorm: o.batchNorm, widths: o.widths, dropout: o.dropout)
        spec.head = o.head
        spec.headDropout = o.headDropout
        if o.fusion {
            // Metadata statistics from the training split only (identical on every rank).
            guard let encoding = MetadataEncoding.fit(latitudes: train.latitudes, longitudes: train.longitudes, sources: train.sources) else {
                throw TrainingError.invalidOption("--fusion: no record of \(train.manifest) has both \"lat\" and \"lon\"")
            }
            spec.fusion = encoding
        }
        let net = try Architectures.build(spec, backend: o.convBackend, algorithm: o.convAlgorithm, weights: o.convWeights,
                                          agreeingOn: comm) { log("warning: \($0)") }
        net.initializeParameters(seed: o.seed)
        if let pretrained = o.pretrained, comm.rank == 0 {
            // Rank 0 loads; the broadcast in `setUp` gives every rank the same weights.
            let report = try net.loadPretrained(path: pretrained, seed: o.seed)
            log("pretrained \(pretrained): \(report)")
        }
        return (spec, net)
    }

    /// With `--resume` and an existing last.ckpt, rank 0 loads it into `net` and every rank learns
    /// where the run stands; otherwise step 0.
    func resumePoint(net: Network, data: TrainingData, runDir: RunDirectory?) throws -> ResumePoint {
        let o = options, train = data.train
        var start = ResumePoint(virtualShards: o.virtualShards ?? ShardedSampler.defaultShards(globalBatch: o.stepBatch, worldSize: comm.size))
        if o.resume, let runDir, FileManager.default.fileExists(atPath: runDir.file("last.ckpt")) {
            let path = runDir.file("last.ckpt")
            let contents = try Checkpoint.load(path: path)
            let h = contents.header
            guard h.classes == data.classes else { throw TrainingError.invalidOption("\(path): its classes differ from this run's") }
            guard let s = h.sampler, s.seed == o.seed, s.globalBatch == o.stepBatch, s.sampleCount == train.count else {
                throw TrainingError.invalidOption("\(path): was written with another seed, global batch or training set size; "
                                                  + "resume with the run's original --seed and --batch-size × --accum-steps")
            }
            if let old = h.manifestFingerprint, let now = train.fingerprint, old != now {
                log("warning: \(path) was trained on a different training manifest (fingerprint \(old.prefix(12))…, now \(now.prefix(12))…); resuming anyway")
            }
            try Checkpoint.apply(contents, to: net, path: path)
            start.step = h.step
            start.virtualShards = s.virtualShards
            start.epochProgress = h.epochProgress ?? [0, 0, 0]
            start.scheduleState = h.schedule?.stateVector ?? LearningRateSchedule.initialStateVector
            start.history = runDir.readHistory().filter { ($0["steps"] as? Int ?? 0) <= h.step }
            start.control = h.runControl
            if o.runControl.emaDecay != nil {
                if let saved = contents.extras["ema"] {
                    guard saved.count == net.store.count + net.store.stateCount else {
                        throw TrainingError.invalidOption("\(path): its EMA has \(saved.count) values, this model needs \(net.store.count + net.store.stateCount)")
                    }
                    start.ema = saved
                } else {
                    log("warning: \(path) holds no weight average; the EMA restarts from the current weights")
                }
            }
            log("resuming \(o.outDir) at step \(h.step) (epoch \(h.epoch)), virtual shards \(s.virtualShards)")
        }
        start.adopt(try broadcast(start.broadcastValues))
        return start
    }

    // MARK: - Epoch loop

    /// One epoch (or the rest of it after a resume, or part of it when `--max-steps` stops).
    func trainEpoch(_ run: TrainingRun) throws {
        var e = try beginEpoch(run)
        for step in e.firstStep..<e.endStep {
            guard try trainStep(run, &e, step: step) else { break }
            run.progress.update(epoch: e.epoch + 1, epochs: options.epochs, step: step + 1, steps: run.stepsPerEpoch,
                                done: step + 1 - e.firstStep, batch: options.stepBatch, seconds: Date().timeIntervalSince(e.started),
                                loss: e.totals.seen > 0 ? e.totals.lossSum / e.totals.seen : 0)
            if options.checkpointEvery > 0, run.globalStep % options.checkpointEvery == 0, step + 1 < run.stepsPerEpoch,
               run.globalStep < run.totalSteps {
                let sums = try comm.allreduce(e.totals.array, op: .sum)
                try saveCheckpoint(run, epochsDone: e.epoch, metrics: [:], progress: sums)
            }
        }
        run.progress.finish()
        var (line, sums) = try reduceEpoch(run, e)
        try averageRunningStatistics(run)
        let valFailures = try validate(run, into: &line)
        try reportFailures(train: e.failures, trainSet: run.data.train, val: valFailures, valSet: run.data.val,
                           epoch: e.epoch + 1, runDir: run.runDir)
        try checkFailureBudget(epoch: e.epoch, sums: sums)
        try endEpoch(run, e, line: line, progress: Array(sums[0..<3]))
    }

    /// The epoch's data order, the loader started at this epoch's first step to run.
    func beginEpoch(_ run: TrainingRun) throws -> EpochState {
        let epoch = run.globalStep / run.stepsPerEpoch
        // Fine-tuning: frozen tensors until --unfreeze-at-epoch (1-based), then everything.
        let unfrozen = options.unfreezeAtEpoch.map { epoch + 1 >= $0 } ?? false
        try run.net.applyFineTuning(freeze: unfrozen ? .none : FreezeSpec(options.freeze),
                                    backboneLRMultiplier: options.backboneLRMultiplier)
        // Frozen tensors' gradients stay zero on every rank: only the rest is summed.
        run.reducer.reduceOnly(from: run.net.store.frozenPrefix)
        let firstStep = run.globalStep % run.stepsPerEpoch
        let endStep = min(run.stepsPerEpoch, run.totalSteps - epoch * run.stepsPerEpoch)
        let order = run.sampler.epoch(epoch)
        run.trainSource.cached.setEpoch(epoch)   // augmentation draws of this epoch
        if options.cachePolicy == .lookAhead {
            run.trainSource.cached.planEpoch(run.sampler, epoch: epoch, fromStep: firstStep, rank: comm.rank, worldSize: comm.size)
        }
        run.cache.resetStats()
        // One loader batch per micro-batch: this rank's share of each step in `accumSteps` consecutive slices.
        let k = run.accumSteps
        run.trainLoader.start(batches: (firstStep..<endStep).flatMap { step -> [[Int]] in
            let mine = order.samples(step: step, rank: comm.rank, worldSize: comm.size)
            return k == 1 ? [mine] : (0..<k).map { Array(mine[($0 * mine.count / k)..<(($0 + 1) * mine.count / k)]) }
        })
        let e = EpochState(epoch: epoch, firstStep: firstStep, endStep: endStep, complete: endStep == run.stepsPerEpoch, order: order,
                           totals: run.carried, lr: run.schedule.rate(atStep: run.globalStep), allreduceCallsBefore: run.reducer.callCount)
        run.carried = EpochTotals()
        return e
    }

    // MARK: - One step

    /// One optimizer step on one global batch: `accumSteps` micro-batches (this rank's parts come
    /// from the loader), gradients accumulated, then one update. False when the loader ran dry.
    func trainStep(_ run: TrainingRun, _ e: inout EpochState, step: Int) throws -> Bool {
        let scheduled = e.order.batchSize(step: step)
        run.net.store.zeroGradients()
        var loaded = 0
        let lossBefore = e.totals.lossSum
        run.beginStepWeights()
        for micro in 0..<run.accumSteps {
            guard let batch = try run.trainLoader.next() else { return false }
            e.failures += batch.failures
            loaded += batch.count
            run.addStepWeights(batch)
            if micro == run.accumSteps - 1 { run.overlap?.arm() }   // only the last backward starts allreduces
            try forwardBackward(run, &e, batch: batch, gradScale: 1 / Float(max(scheduled, 1)))
            run.trainLoader.recycle(batch)
        }
        // With skipped samples the mean runs over the samples actually loaded.
        var globalCount = scheduled
        if options.skipsFailures { globalCount = Int(try comm.allreduce([Int64(loaded)], op: .sum)[0]) }
        // The mean's normaliser D (see `Loss`): the global sample count, or a weighted loss's global weight sum.
        let normaliser = try run.lossNormaliser(globalCount: globalCount, comm: comm)
        if run.lossFunction.isWeighted, normaliser > 0 {
            // train_loss: the step's weighted mean, counted once per sample.
            e.totals.lossSum = lossBefore + (e.totals.lossSum - lossBefore) * Double(globalCount) / normaliser
        }
        e.lr = run.schedule.rate(atStep: run.globalStep)
        if globalCount > 0, normaliser > 0 {
            try applyUpdate(run, &e, rescale: normaliser == Double(scheduled) ? 1 : Float(Double(scheduled) / normaliser))
        } else if run.reducer.isOverlapping { try run.overlap?.finish() }
        run.globalStep += 1
        return true
    }

    /// Forward, loss and backward on this rank's samples; ACCUMULATES parameter gradients.
    func forwardBackward(_ run: TrainingRun, _ e: inout EpochState, batch: LoadedBatch, gradScale: Float) throws {
        guard batch.count > 0 else { return }
        // Mixup/cutmix: the soft targets of the batch's samples, recomputed from (seed, epoch, index).
        if let mixer = run.mixer {
            mixer.softTargets(indices: batch.indices, labels: batch.labels, allLabels: run.data.train.labels, epoch: e.epoch,
                              classes: run.classes, into: run.softTargets)
        }
        let targets: UnsafePointer<Float>? = run.mixer != nil ? UnsafePointer(run.softTargets) : nil
        if let dir = options.dumpAugmented, run.globalStep == e.epoch * run.stepsPerEpoch + e.firstStep {
            try AugmentDump.write(dir: dir, epoch: e.epoch, batch: batch, sampleCount: run.format.sampleCount, classes: run.classes, targets: targets)
        }
        let net = run.net
        let logits = batch.indices.withUnsafeBufferPointer { ids in
            net.forward(batch.inputs, batch: batch.count, mode: .train,
                        context: StepContext(seed: options.seed, step: run.globalStep, sampleIDs: ids,
                                             metadata: UnsafePointer(batch.metadata)))
        }
        let r = run.loss(logits: logits, labels: batch.labels, targets: targets, batch: batch.count, gradScale: gradScale)
        net.backward(batch.inputs, dLogits: run.dLogits, batch: batch.count, mode: .train)
        e.totals.lossSum += r.lossSum; e.totals.correct += Double(r.correct); e.totals.seen += Double(batch.count)
    }

    /// Sums the gradients over ranks (once per step), scales them by `rescale`, clips them by
    /// global norm (the same on every rank, as the sums are), applies the optimizer with the step's
    /// learning rate, and moves the weight average.
    func applyUpdate(_ run: TrainingRun, _ e: inout EpochState, rescale: Float) throws {
        let store = run.net.store
        if let overlap = run.overlap, run.reducer.isOverlapping {
            try overlap.finish()
            e.allreduceNanos += run.reducer.lastSpanNanos
            e.allreduceWaitNanos += run.reducer.lastWaitNanos
        } else {
            let t = DispatchTime.now().uptimeNanoseconds
            try run.reducer.reduce(store.gradients)
            let dt = DispatchTime.now().uptimeNanoseconds - t
            e.allreduceNanos += dt; e.allreduceWaitNanos += dt
        }
        // Below `reducer.start`: frozen tensors, no gradient (left out of the norm, as PyTorch's
        // clip_grad_norm_ leaves out parameters without one).
        let trained = run.reducer.start
        if rescale != 1 { for i in trained..<store.count { store.gradients[i] *= rescale } }
        if let maxNorm = options.runControl.clipGradNorm {
            e.gradNormSum += GradientClipping.clip(store.gradients + trained, count: store.count - trained, maxNorm: maxNorm)
        }
        run.optimizer.step(store, lr: e.lr)
        run.ema?.update(from: store)
        e.updates += 1
    }

    // MARK: - Epoch end

    /// The epoch's history line from sums over all ranks (training loss/accuracy, throughput, data
    /// stall, cache traffic), and the reduced sums [loss, correct, seen, failures, wait s, allreduce s].
    func reduceEpoch(_ run: TrainingRun, _ e: EpochState) throws -> ([String: Any], [Double]) {
        let world = Double(comm.size)
        let sums = try comm.allreduce(e.totals.array + [Double(e.failures.count), run.trainLoader.waitSeconds,
                                                        Double(e.allreduceNanos) / 1e9, Double(e.allreduceWaitNanos) / 1e9], op: .sum)
        let seconds = try comm.allreduce([Date().timeIntervalSince(e.started)], op: .max)[0]
        let totals = EpochTotals(Array(sums[0..<3]))
        let stepsRun = e.endStep - e.firstStep
        var line: [String: Any] = [
            "epoch": e.epoch + 1, "steps": run.globalStep, "lr": Double(e.lr),
            "train_loss": totals.seen > 0 ? totals.lossSum / totals.seen : 0,
            "train_acc": totals.seen > 0 ? totals.correct / totals.seen : 0,
            "images_per_sec": seconds > 0 ? Double(stepsRun) * Double(options.stepBatch) / seconds : 0,
            "seconds": seconds,
            "data_stall": seconds > 0 ? sums[4] / world / seconds : 0,
            "allreduce_fraction": seconds > 0 ? sums[5] / world / seconds : 0,
            // Time blocked on the allreduce after backward; below allreduce_fraction when overlapped.
            "allreduce_wait_fraction": seconds > 0 ? sums[6] / world / seconds : 0,
            "skipped": Int(sums[3]),
            // Rank 0's pipeline depths at the epoch's end (batches decoded / fetched ahead).
            "prefetch_depth": run.trainLoader.depth, "fetch_ahead_depth": run.trainLoader.fetchDepth,
        ]
        if !e.complete { line["partial"] = true }
        // Debug counter: gradient allreduce calls per optimizer update (1 with or without accumulation).
        if e.updates > 0 {
            line["allreduce_per_step"] = Double(run.reducer.callCount - e.allreduceCallsBefore) / Double(e.updates)
            // Gradient elements summed per allreduce (frozen tensors left out).
            line["allreduce_elements"] = run.reducer.count - run.reducer.start
            if options.runControl.clipGradNorm != nil { line["grad_norm"] = e.gradNormSum / Double(e.updates) }
        }
        // This epoch's cache traffic over all ranks (training and validation reads).
        let st = run.cache.stats()
        let c = try comm.allreduce([st.accesses, st.memoryHits + st.diskHits, st.fetches, st.bytesFetched,
                                    st.memoryEvictions + st.diskEvictions, st.corruptEntries].map(Int64.init), op: .sum)
        line["cache_accesses"] = Int(c[0]); line["cache_hits"] = Int(c[1])
        line["cache_hit_rate"] = c[0] > 0 ? Double(c[1]) / Double(c[0]) : 0
        line["cache_fetches"] = Int(c[2]); line["cache_bytes_fetched"] = Int(c[3])
        line["cache_evictions"] = Int(c[4]); line["cache_corrupt_entries"] = Int(c[5])
        return (line, sums)
    }

    /// Validation metrics of the current weights into the history line; returns this rank's
    /// validation failures.
    func validate(_ run: TrainingRun, into line: inout [String: Any]) throws -> [SampleFailure] {
        guard let val = run.data.val, let valLoader = run.valLoader else { return [] }
        let r = try Evaluation.run(run.net, loader: valLoader, setCount: val.count, classes: run.classes,
                                   localBatch: run.evalLocal, comm: comm, scratch: run.predicted)
        line["val_loss"] = r.meanLoss
        line["val_acc"] = r.accuracy
        for (k, v) in r.metrics.summary where k != "accuracy" { line["val_\(k)"] = v }   // val_macro_f1, val_top5, val_ece, …
        line["val_count"] = Int(r.count)
        line["val_skipped"] = r.skipped
        line["val_macro_f1"] = ClassificationMetrics(confusion: r.confusion).macroF1
        run.lastValAccuracy = r.accuracy
        if let ema = run.ema {
            // The weight average, evaluated in place of the weights (then swapped back).
            ema.swap(with: run.net.store)
            defer { ema.swap(with: run.net.store) }
            let a = try Evaluation.run(run.net, loader: valLoader, setCount: val.count, classes: run.classes,
                                       localBatch: run.evalLocal, comm: comm, scratch: run.predicted)
            line["val_loss_ema"] = a.meanLoss
            line["val_acc_ema"] = a.accuracy
            line["val_macro_f1_ema"] = ClassificationMetrics(confusion: a.confusion).macroF1
        }
        return r.failures
    }

    /// Stops the run when too many of the epoch's samples failed to load.
    func checkFailureBudget(epoch: Int, sums: [Double]) throws {
        let o = options
        let scheduled = sums[2] + sums[3]
        if o.skipsFailures, scheduled > 0, sums[3] / scheduled > o.maxBadFraction {
            // Every rank sees the same reduced counts, so every rank stops here together.
            throw TrainingError.tooManyFailures(String(format: "epoch %d: %d of %.0f samples failed (%.1f%%), above --max-bad-fraction %.2f; see %@",
                                                       epoch + 1, Int(sums[3]), scheduled, 100 * sums[3] / scheduled, o.maxBadFraction,
                                                       (o.outDir as NSString).appendingPathComponent("failed_samples.jsonl")))
        }
    }

    /// The monitored metric (best, best-K, early stopping), checkpoints and the history line of a
    /// finished (or stopped) epoch. Only complete epochs are ranked.
    func endEpoch(_ run: TrainingRun, _ e: EpochState, line: [String: Any], progress: [Double]) throws {
        // Reduce-on-plateau at the end of a complete epoch, before the checkpoint records its state.
        if e.complete, let m = line[run.plateauMetric] as? Double { run.schedule.epochEnded(metric: m) }
        var update = RunControlState.Update()
        if e.complete { update = run.control.record(epoch: e.epoch + 1, value: line[run.metric] as? Double ?? 0, options: options.runControl) }
        try saveCheckpoint(run, epochsDone: e.complete ? e.epoch + 1 : e.epoch, metrics: line.compactMapValues { $0 as? Double },
                           progress: e.complete ? nil : progress, update: update)
        if run.control.stopped, comm.rank == 0 {
            log(String(format: "early stopping after epoch %d: %@ did not improve by more than %g for %d epoch(s); best %.4f at epoch %d",
                       e.epoch + 1, run.metric, options.runControl.earlyStopMinDelta, run.control.badEpochs,
                       run.control.best ?? 0, run.control.bestEpoch))
        }
        guard let runDir = run.runDir else { return }
        run.history.append(line)
        try runDir.writeHistory(run.history)
        do { try CurvesPlot.render(history: run.history).writePNG(to: runDir.file("curves.png")) }
        catch { log("warning: cannot write \(runDir.file("curves.png")): \(error)") }
        log(String(format: "epoch %d/%d%@  train_loss %.4f  train_acc %.4f", e.epoch + 1, options.epochs, e.complete ? "" : " (partial)",
                   line["train_loss"] as! Double, line["train_acc"] as! Double)
            + (line["val_acc"].map { String(format: "  val_loss %.4f  val_acc %.4f", line["val_loss"] as! Double, $0 as! Double) } ?? "")
            + String(format: "  %.0f img/s  %.1fs  data stall %.1f%%", line["images_per_sec"] as! Double, line["seconds"] as! Double,
                     100 * (line["data_stall"] as? Double ?? 0)))
    }

    // MARK: - Checkpoints and the end

    /// Rank 0 writes last.ckpt, best.ckpt when the epoch is the best so far and best-epochNNN.ckpt
    /// when it enters the best K (each atomically), then deletes the files that left the ranking (the
    /// ranking in last.ckpt is updated first, so a crash leaves at most a stray file, never a
    /// missing one). All ranks first agree on the BatchNorm statistics, since every rank resumes
    /// from rank 0's file.
    func saveCheckpoint(_ run: TrainingRun, epochsDone: Int, metrics: [String: Double], progress: [Double]?,
                        update: RunControlState.Update = .init()) throws {
        try averageRunningStatistics(run)
        guard let runDir = run.runDir else { return }
        let o = options
        var header = CheckpointHeader(model: run.spec, classes: run.data.classes, network: run.net, epoch: epochsDone, step: run.globalStep,
                                      metrics: metrics, mean: run.format.mean, std: run.format.std, options: o.record)
        header.sampler = .init(seed: o.seed, virtualShards: run.sampler.virtualShards, globalBatch: o.stepBatch, sampleCount: run.data.train.count)
        header.manifestFingerprint = run.data.train.fingerprint
        header.epochProgress = progress
        header.runControl = run.control
        header.schedule = run.schedule
        var emaValues: [Float] = []
        if let ema = run.ema {
            header.extras = [.init(name: "ema", count: ema.buffer.count)]
            emaValues = ema.canonical(run.net.store)
        }
        let paths = [update.keep, update.isBest ? "best.ckpt" : nil, "last.ckpt"].compactMap { $0.map(runDir.file) }
        try emaValues.withUnsafeBufferPointer { ema in
            try Checkpoint.save(run.net, header: header, extras: run.ema == nil ? [] : [ema], to: paths)
        }
        for name in update.dropped { try? FileManager.default.removeItem(atPath: runDir.file(name)) }
    }

    /// The summary every rank returns (rank 0's best metric, broadcast).
    func finish(_ run: TrainingRun) throws -> TrainSummary {
        network = run.net
        let bestAll = [run.control.best ?? 0, Double(run.control.bestEpoch)]
        if comm.rank == 0 && bestAll[1] > 0 {
            log(String(format: "best %@ %.4f at epoch %d (%@)", run.metric, bestAll[0], Int(bestAll[1]),
                       (options.outDir as NSString).appendingPathComponent("best.ckpt")))
        }
        return TrainSummary(steps: run.globalStep, bestMetricName: run.metric, bestMetric: bestAll[0],
                            bestEpoch: Int(bestAll[1]), finalValAccuracy: run.lastValAccuracy)
    }

    /// BatchNorm running statistics (and their weight average): the mean over ranks.
    private func averageRunningStatistics(_ run: TrainingRun) throws {
        let store = run.net.store
        guard comm.size > 1, store.stateCount > 0 else { return }
        let inv = 1 / Float(comm.size)
        for buffer in [store.stateBuffer] + (run.ema.map { [$0.stateBuffer] } ?? []) {
            try comm.allreduce(buffer, op: .sum)
            for i in buffer.indices { buffer[i] *= inv }
        }
    }

    private func broadcast(_ v: [Double]) throws -> [Double] {
        var v = v
        try v.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
        return v
    }

    /// Gathers every rank's skipped samples to the coordinator, which lists them in
    /// failed_samples.jsonl (nothing disappears silently).
    private func reportFailures(train: [SampleFailure], trainSet: LabeledSet, val: [SampleFailure], valSet: LabeledSet?,
                                epoch: Int, runDir: RunDirectory?) throws {
        guard options.skipsFailures else { return }
        let mine = train.map { jsonLine(["image": trainSet.images[$0.index], "reason": $0.reason, "rank": comm.rank, "epoch": epoch, "stage": "train"]) }
            + val.map { jsonLine(["image": valSet!.images[$0.index], "reason": $0.reason, "rank": comm.rank, "epoch": epoch, "stage": "val"]) }
        let all = try comm.gather(bytes: Array(mine.joined(separator: "\n").utf8), root: 0)
        if let all, let runDir {
            let lines = all.compactMap { $0.isEmpty ? nil : String(decoding: $0, as: UTF8.self) }
            try runDir.appendLines(lines, to: "failed_samples.jsonl")
        }
    }
}

func jsonLine(_ object: [String: Any]) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}

/// The one-line progress display on rank 0 (only when stderr is a terminal).
final class ProgressLine {
    let enabled: Bool
    private var last = Date.distantPast
    init(enabled: Bool) { self.enabled = enabled }

    /// `done` steps (of `batch` images each) took `seconds`; `step` of `steps` is the position in the epoch.
    func update(epoch: Int, epochs: Int, step: Int, steps: Int, done: Int, batch: Int, seconds: Double, loss: Double) {
        guard enabled, Date().timeIntervalSince(last) > 0.5 || step == steps else { return }
        last = Date()
        let rate = seconds > 0 ? Double(done * batch) / seconds : 0
        let eta = done > 0 ? Double(steps - step) * seconds / Double(done) : 0
        let text = String(format: "\repoch %d/%d  step %d/%d  %.0f img/s  loss %.4f  ETA %dm%02ds ", epoch, epochs, step, steps,
                          rate, loss, Int(eta) / 60, Int(eta) % 60)
        FileHandle.standardError.write(Data(text.utf8))
    }

    func finish() { if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) } }
}
