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

    /// Per-epoch sums on one rank: loss, correct predictions, samples seen.
    struct EpochTotals {
        var lossSum = 0.0, correct = 0.0, seen = 0.0
        var array: [Double] { [lossSum, correct, seen] }
        init() {}
        init(_ a: [Double]) { lossSum = a[0]; correct = a[1]; seen = a[2] }
    }

    /// Reads the manifests on rank 0, ships them to every rank, and trains.
    public func run() throws -> TrainSummary {
        let o = options
        let classFile = o.classesFile
        let data = try DatasetExchange.share(comm) {
            let fixed = try classFile.map { try ClassList.load(path: $0) }
            let (train, classes) = try LabeledSet.load(path: o.trainManifest, classes: fixed, options: o.manifestOptions)
            guard train.count > 0 else { throw TrainingError.invalidOption("\(o.trainManifest): no usable records") }
            guard classes.names.count >= 2 else {
                throw TrainingError.invalidOption("\(o.trainManifest): needs at least 2 classes, found \(classes.names.count)")
            }
            let val = try o.valManifest.map { try LabeledSet.load(path: $0, classes: classes, options: o.manifestOptions).0 }
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
        BLAS.setThreads(o.threads)
        let isRoot = comm.rank == 0, world = comm.size
        let format = try InputFormat(channels: o.channels, imageSize: o.imageSize, mean: o.mean, std: o.std)
        let runDir: RunDirectory? = isRoot ? try RunDirectory(path: o.outDir) : nil
        let train = data.train, val = data.val, classNames = data.classes
        let classes = classNames.count
        if isRoot, let runDir {
            try ClassList(names: classNames).save(to: runDir.file("classes.json"))
            // Class weights of the training data (used by weighted losses), saved with the run.
            var counts = [Int](repeating: 0, count: classes)
            for l in train.labels { counts[Int(l)] += 1 }
            try ClassWeights(classes: classNames, counts: counts).save(to: runDir.file("class_weights.json"))
            try runDir.writeJSON(o.record.merging(["train_fingerprint": train.fingerprint ?? ""]) { a, _ in a }, to: "options.json")
            let rejected = train.rejected + (val?.rejected ?? [])
            if !rejected.isEmpty {
                log("skipped \(rejected.count) bad manifest record(s) (--skip-bad-records):")
                for r in rejected.prefix(10) { log("  \(r)") }
                try runDir.appendLines(rejected.map { jsonLine(["reason": $0, "stage": "manifest"]) }, to: "failed_samples.jsonl")
            }
        }

        // 2. The model, identical on every rank; or the run's own last checkpoint.
        var spec = ModelSpec(architecture: o.model, channels: o.channels, imageSize: o.imageSize,
                             classes: classes, batchNorm: o.batchNorm, widths: o.widths, dropout: o.dropout)
        spec.head = o.head
        spec.headDropout = o.headDropout
        let net = try Architectures.build(spec, backend: try ConvolutionBackends.named(o.convBackend, algorithm: o.convAlgorithm))
        net.initializeParameters(seed: o.seed)
        if let pretrained = o.pretrained, isRoot {
            // Rank 0 loads; the broadcast below gives every rank the same weights.
            let report = try net.loadPretrained(path: pretrained, seed: o.seed)
            log("pretrained \(pretrained): \(report)")
        }
        var history: [[String: Any]] = []
        // [global step, virtual shards, epoch loss sum, correct, seen] as the coordinator found them.
        var resume: [Double] = [0, Double(o.virtualShards ?? ShardedSampler.defaultShards(globalBatch: o.batchSize, worldSize: world)), 0, 0, 0]
        if o.resume, isRoot, let runDir, FileManager.default.fileExists(atPath: runDir.file("last.ckpt")) {
            let path = runDir.file("last.ckpt")
            let contents = try Checkpoint.load(path: path)
            let h = contents.header
            guard h.classes == classNames else { throw TrainingError.invalidOption("\(path): its classes differ from this run's") }
            guard let s = h.sampler, s.seed == o.seed, s.globalBatch == o.batchSize, s.sampleCount == train.count else {
                throw TrainingError.invalidOption("\(path): was written with another seed, global batch or training set size; "
                                                  + "resume with the run's original --seed and --batch-size")
            }
            if let old = h.manifestFingerprint, let now = train.fingerprint, old != now {
                log("warning: \(path) was trained on a different training manifest (fingerprint \(old.prefix(12))…, now \(now.prefix(12))…); resuming anyway")
            }
            try Checkpoint.apply(contents, to: net, path: path)
            resume = [Double(h.step), Double(s.virtualShards)] + (h.epochProgress ?? [0, 0, 0])
            history = runDir.readHistory().filter { ($0["steps"] as? Int ?? 0) <= h.step }
            log("resuming \(o.outDir) at step \(h.step) (epoch \(h.epoch)), virtual shards \(s.virtualShards)")
        }
        resume = try broadcast(resume)
        var globalStep = Int(resume[0])
        for buffer in [net.store.parameterBuffer, net.store.optimizerStateBuffer, net.store.stateBuffer] {
            try comm.broadcast(UnsafeMutableRawBufferPointer(buffer), root: 0)
        }
        let sampler = try ShardedSampler(sampleCount: train.count, globalBatch: o.batchSize, virtualShards: Int(resume[1]), seed: o.seed)
        try sampler.validate(worldSize: world)

        // 3. Memory planned once: activations, loss gradient, loaders' slots.
        let shardsPerRank = sampler.virtualShards / world
        let maxLocal = min(o.batchSize, (o.batchSize / sampler.virtualShards + 1) * shardsPerRank)
        let evalLocal = max(1, o.evalBatchSize / world)
        net.prepare(maxBatch: max(maxLocal, evalLocal))
        let dLogits = UnsafeMutablePointer<Float>.allocate(capacity: max(maxLocal, evalLocal) * classes)
        let predicted = UnsafeMutablePointer<Int32>.allocate(capacity: max(maxLocal, evalLocal))
        defer { dLogits.deallocate(); predicted.deallocate() }
        let reducer = BucketedAllreduce(count: net.store.count, bucketElements: o.bucketElements, communicator: comm)
        let optimizer = SGD(momentum: o.momentum, weightDecay: o.weightDecay, nesterov: o.nesterov)
        let stepsPerEpoch = sampler.stepsPerEpoch
        let totalSteps = min(o.maxSteps ?? Int.max, stepsPerEpoch * o.epochs)
        // The schedule spans all epochs; --max-steps only stops early (so a stopped run resumes on schedule).
        let schedule = LearningRateSchedule(kind: o.schedule, baseLR: o.lr, totalSteps: stepsPerEpoch * o.epochs, floor: o.lrFloor)
        // This rank's own byte-bounded image cache (a limit too small for one batch fails here).
        let cache = try ImageCache(options: o.cacheOptions(rank: MPIRuntime.isActive ? MPIRuntime.worldRank : comm.rank,
                                                           localBatch: max(maxLocal, evalLocal)))
        let trainSource = ImageSampleSource(set: train, format: format, cache: cache)
        let trainLoader = BatchLoader(source: trainSource, maxBatch: maxLocal,
                                      prefetch: o.prefetch, workers: o.loaderThreads, skipFailures: o.skipsFailures)
        let valLoader = val.map { BatchLoader(source: ImageSampleSource(set: $0, format: format, cache: cache), maxBatch: evalLocal,
                                              prefetch: o.prefetch, workers: o.loaderThreads, skipFailures: o.skipsFailures) }
        defer { trainLoader.shutdown(); valLoader?.shutdown() }
        let progress = ProgressLine(enabled: isRoot && o.progress && isatty(STDERR_FILENO) == 1)
        let metric = val != nil ? "val_acc" : "train_acc"
        var best = (value: -Double.infinity, epoch: 0)
        for h in history where h["partial"] == nil {
            if let m = h[metric] as? Double, m > best.value { best = (m, h["epoch"] as? Int ?? 0) }
        }
        if isRoot {
            log("distrainer: \(world) rank(s), model \(o.model) (\(net.parameterCount) parameters), \(train.count) training images"
                + (val.map { ", \($0.count) validation images" } ?? "") + ", \(classes) classes, global batch \(o.batchSize), "
                + "\(sampler.virtualShards) virtual shards")
        }

        /// rank 0 writes last.ckpt (and best.ckpt when `isBest`); all ranks first agree on the
        /// BatchNorm statistics, since every rank resumes from rank 0's file.
        func saveCheckpoint(epochsDone: Int, metrics: [String: Double], progress: [Double]?, isBest: Bool) throws {
            try averageRunningStatistics(net)
            guard isRoot, let runDir else { return }
            var header = CheckpointHeader(model: spec, classes: classNames, network: net, epoch: epochsDone, step: globalStep,
                                          metrics: metrics, mean: format.mean, std: format.std, options: o.record)
            header.sampler = .init(seed: o.seed, virtualShards: sampler.virtualShards, globalBatch: o.batchSize, sampleCount: train.count)
            header.manifestFingerprint = train.fingerprint
            header.epochProgress = progress
            try Checkpoint.save(net, header: header, to: runDir.file("last.ckpt"))
            if isBest { try Checkpoint.save(net, header: header, to: runDir.file("best.ckpt")) }
        }

        var lastVal: Double?
        var carried = EpochTotals(isRoot ? Array(resume[2...]) : [0, 0, 0])
        while globalStep < totalSteps {
            let epoch = globalStep / stepsPerEpoch
            let firstStep = globalStep % stepsPerEpoch
            let endStep = min(stepsPerEpoch, totalSteps - epoch * stepsPerEpoch)
            let order = sampler.epoch(epoch)
            if o.cachePolicy == .lookAhead {
                trainSource.cached.planEpoch(sampler, epoch: epoch, fromStep: firstStep, rank: comm.rank, worldSize: world)
            }
            cache.resetStats()
            trainLoader.start(batches: (firstStep..<endStep).map { order.samples(step: $0, rank: comm.rank, worldSize: world) })
            let t0 = Date()
            var totals = carried
            carried = EpochTotals()
            var lr = schedule.rate(atStep: globalStep)
            var failures: [SampleFailure] = []
            var allreduceNanos: UInt64 = 0
            for step in firstStep..<endStep {
                guard let batch = try trainLoader.next() else { break }
                failures += batch.failures
                var globalCount = order.batchSize(step: step)
                if o.skipsFailures { globalCount = Int(try comm.allreduce([Int64(batch.count)], op: .sum)[0]) }
                net.store.zeroGradients()
                if batch.count > 0 {
                    let logits = batch.indices.withUnsafeBufferPointer { ids in
                        net.forward(batch.inputs, batch: batch.count, mode: .train,
                                    context: StepContext(seed: o.seed, step: globalStep, sampleIDs: ids))
                    }
                    let r = SoftmaxCrossEntropy.evaluate(logits: logits, labels: batch.labels, batch: batch.count, classes: classes,
                                                         gradScale: 1 / Float(max(globalCount, 1)), dLogits: dLogits)
                    net.backward(batch.inputs, dLogits: dLogits, batch: batch.count, mode: .train)
                    totals.lossSum += r.lossSum; totals.correct += Double(r.correct); totals.seen += Double(batch.count)
                }
                trainLoader.recycle(batch)
                lr = schedule.rate(atStep: globalStep)
                if globalCount > 0 {
                    let t = DispatchTime.now().uptimeNanoseconds
                    try reducer.reduce(net.store.gradients)
                    allreduceNanos += DispatchTime.now().uptimeNanoseconds - t
                    optimizer.step(net.store, lr: lr)
                }
                globalStep += 1
                progress.update(epoch: epoch + 1, epochs: o.epochs, step: step + 1, steps: stepsPerEpoch,
                                done: step + 1 - firstStep, batch: o.batchSize, seconds: Date().timeIntervalSince(t0),
                                loss: totals.seen > 0 ? totals.lossSum / totals.seen : 0)
                if o.checkpointEvery > 0, globalStep % o.checkpointEvery == 0, step + 1 < stepsPerEpoch, globalStep < totalSteps {
                    let sums = try comm.allreduce(totals.array, op: .sum)
                    try saveCheckpoint(epochsDone: epoch, metrics: [:], progress: sums, isBest: false)
                }
            }
            progress.finish()
            let complete = endStep == stepsPerEpoch
            let sums = try comm.allreduce(totals.array + [Double(failures.count), trainLoader.waitSeconds,
                                                          Double(allreduceNanos) / 1e9], op: .sum)
            let seconds = try comm.allreduce([Date().timeIntervalSince(t0)], op: .max)[0]
            let epochTotals = EpochTotals(Array(sums[0..<3]))
            let stepsRun = endStep - firstStep
            var line: [String: Any] = [
                "epoch": epoch + 1, "steps": globalStep, "lr": Double(lr),
                "train_loss": epochTotals.seen > 0 ? epochTotals.lossSum / epochTotals.seen : 0,
                "train_acc": epochTotals.seen > 0 ? epochTotals.correct / epochTotals.seen : 0,
                "images_per_sec": seconds > 0 ? Double(stepsRun) * Double(o.batchSize) / seconds : 0,
                "seconds": seconds,
                "data_stall": seconds > 0 ? sums[4] / Double(world) / seconds : 0,
                "allreduce_fraction": seconds > 0 ? sums[5] / Double(world) / seconds : 0,
                "skipped": Int(sums[3]),
            ]
            if !complete { line["partial"] = true }
            // This epoch's cache traffic over all ranks (training and validation reads).
            let st = cache.stats()
            let c = try comm.allreduce([st.accesses, st.memoryHits + st.diskHits, st.fetches, st.bytesFetched,
                                        st.memoryEvictions + st.diskEvictions, st.corruptEntries].map(Int64.init), op: .sum)
            line["cache_accesses"] = Int(c[0]); line["cache_hits"] = Int(c[1])
            line["cache_hit_rate"] = c[0] > 0 ? Double(c[1]) / Double(c[0]) : 0
            line["cache_fetches"] = Int(c[2]); line["cache_bytes_fetched"] = Int(c[3])
            line["cache_evictions"] = Int(c[4]); line["cache_corrupt_entries"] = Int(c[5])
            try averageRunningStatistics(net)
            var valFailures: [SampleFailure] = []
            if let val, let valLoader {
                let r = try Evaluation.run(net, loader: valLoader, setCount: val.count, classes: classes,
                                           localBatch: evalLocal, comm: comm, scratch: predicted)
                line["val_loss"] = r.meanLoss
                line["val_acc"] = r.accuracy
                line["val_count"] = Int(r.count)
                line["val_skipped"] = r.skipped
                lastVal = r.accuracy
                valFailures = r.failures
            }
            try reportFailures(train: failures, trainSet: train, val: valFailures, valSet: val, epoch: epoch + 1, runDir: runDir)
            let scheduled = epochTotals.seen + sums[3]
            if o.skipsFailures, scheduled > 0, sums[3] / scheduled > o.maxBadFraction {
                // Every rank sees the same reduced counts, so every rank stops here together.
                throw TrainingError.tooManyFailures(String(format: "epoch %d: %d of %.0f samples failed (%.1f%%), above --max-bad-fraction %.2f; see %@",
                                                           epoch + 1, Int(sums[3]), scheduled, 100 * sums[3] / scheduled, o.maxBadFraction,
                                                           (o.outDir as NSString).appendingPathComponent("failed_samples.jsonl")))
            }
            let value = line[metric] as? Double ?? 0
            let improved = complete && value > best.value
            if improved { best = (value, epoch + 1) }
            try saveCheckpoint(epochsDone: complete ? epoch + 1 : epoch, metrics: line.compactMapValues { $0 as? Double },
                               progress: complete ? nil : Array(sums[0..<3]), isBest: improved)
            if isRoot, let runDir {
                history.append(line)
                try runDir.writeHistory(history)
                log(String(format: "epoch %d/%d%@  train_loss %.4f  train_acc %.4f", epoch + 1, o.epochs, complete ? "" : " (partial)",
                           line["train_loss"] as! Double, line["train_acc"] as! Double)
                    + (line["val_acc"].map { String(format: "  val_loss %.4f  val_acc %.4f", line["val_loss"] as! Double, $0 as! Double) } ?? "")
                    + String(format: "  %.0f img/s  %.1fs", line["images_per_sec"] as! Double, seconds))
            }
        }
        network = net
        let bestAll = try broadcast([best.value, Double(best.epoch)])
        if isRoot && bestAll[1] > 0 {
            log(String(format: "best %@ %.4f at epoch %d (%@)", metric, bestAll[0], Int(bestAll[1]),
                       (o.outDir as NSString).appendingPathComponent("best.ckpt")))
        }
        return TrainSummary(steps: globalStep, bestMetricName: metric, bestMetric: bestAll[0],
                            bestEpoch: Int(bestAll[1]), finalValAccuracy: lastVal)
    }

    /// BatchNorm running statistics: the mean over ranks.
    private func averageRunningStatistics(_ net: Network) throws {
        guard comm.size > 1, net.store.stateCount > 0 else { return }
        try comm.allreduce(net.store.stateBuffer, op: .sum)
        let inv = 1 / Float(comm.size)
        for i in 0..<net.store.stateCount { net.store.state[i] *= inv }
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
