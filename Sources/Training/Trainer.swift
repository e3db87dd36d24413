import Foundation
import Dist
import Model
import Shards
import Support

/// What a finished training run reports.
public struct TrainSummary: Sendable {
    public var epochsRun: Int
    public var steps: Int
    public var bestMetricName: String
    public var bestMetric: Double
    public var bestEpoch: Int
    public var finalValAccuracy: Double?
}

/// Data-parallel training over a communicator (MPI ranks, or a single process).
///
/// Every rank holds the whole model. Rank 0 initialises the parameters and broadcasts them;
/// each optimizer step processes one GLOBAL batch (`batchSize`), split into contiguous rank
/// slices by `EpochPlan`; each rank back-propagates its slice with the loss scaled by
/// 1/(global batch), the gradient buffer is summed by a bucketed allreduce, and every rank
/// applies the same update, so N ranks compute what 1 rank would on the same global batch
/// (BatchNorm aside: it normalises over each rank's slice, as PyTorch DDP does).
/// BatchNorm running statistics are averaged across ranks at the end of every epoch.
public final class Trainer {
    public let options: TrainOptions
    let comm: Communicator
    /// Where rank 0 prints progress and results.
    let log: (String) -> Void

    public init(options: TrainOptions, communicator: Communicator, log: @escaping (String) -> Void = { print($0) }) {
        self.options = options
        self.comm = communicator
        self.log = log
    }

    public func run() throws -> TrainSummary {
        let o = options
        guard o.batchSize >= 1, o.epochs >= 1, o.evalBatchSize >= 1 else {
            throw TrainingError.invalidOption("--batch-size, --eval-batch-size and --epochs must be positive")
        }
        BLAS.setThreads(o.threads)
        let isRoot = comm.rank == 0, world = comm.size
        let format = try InputFormat(channels: o.channels, imageSize: o.imageSize, mean: o.mean, std: o.std)

        // 1. The coordinator reads and validates the manifests and ships them to every rank.
        let runDir: RunDirectory? = isRoot ? try RunDirectory(path: o.outDir) : nil
        let shipment = try DatasetExchange.share(comm) {
            let (train, classes) = try LabeledSet.load(path: o.trainManifest, classes: nil, skipBad: o.skipBadRecords)
            guard train.count > 0 else { throw TrainingError.invalidOption("\(o.trainManifest): no usable records") }
            guard classes.names.count >= 2 else {
                throw TrainingError.invalidOption("\(o.trainManifest): needs at least 2 classes, found \(classes.names.count)")
            }
            let val = try o.valManifest.map { try LabeledSet.load(path: $0, classes: classes, skipBad: o.skipBadRecords).0 }
            return DatasetShipment(train: train, val: val, classes: classes.names)
        }
        let train = shipment.train!, val = shipment.val, classNames = shipment.classes!
        if isRoot, let runDir {
            try ClassList(names: classNames).save(to: runDir.file("classes.json"))
            try runDir.writeJSON(o.record, to: "options.json")
            let rejected = train.rejected + (val?.rejected ?? [])
            if !rejected.isEmpty {
                log("skipped \(rejected.count) bad manifest record(s) (--skip-bad-records):")
                for r in rejected.prefix(10) { log("  \(r)") }
                try runDir.appendLines(rejected.map { jsonLine(["reason": $0, "stage": "manifest"]) }, to: "failed_samples.jsonl")
            }
        }

        // 2. The model, identical on every rank.
        let spec = ModelSpec(architecture: o.model, channels: o.channels, imageSize: o.imageSize,
                             classes: classNames.count, batchNorm: o.batchNorm, widths: o.widths, dropout: o.dropout)
        let net = try Architectures.build(spec)
        net.initializeParameters(seed: o.seed)
        var startEpoch = 0, globalStep = 0
        var history: [[String: Any]] = []
        var best = (metric: -Double.infinity, epoch: 0)
        if o.resume {
            var resumePoint = [Int64](repeating: 0, count: 2)
            if isRoot, let runDir, FileManager.default.fileExists(atPath: runDir.file("last.ckpt")) {
                let contents = try Checkpoint.load(path: runDir.file("last.ckpt"))
                guard contents.header.classes == classNames else {
                    throw TrainingError.invalidOption("\(runDir.file("last.ckpt")): its classes differ from \(o.trainManifest)'s")
                }
                try Checkpoint.apply(contents, to: net, path: runDir.file("last.ckpt"))
                resumePoint = [Int64(contents.header.epoch), Int64(contents.header.step)]
                history = runDir.readHistory().filter { ($0["epoch"] as? Int ?? 0) <= contents.header.epoch }
                for h in history { if let m = h[metricName(val != nil)] as? Double, m > best.metric { best = (m, h["epoch"] as? Int ?? 0) } }
                log("resuming \(o.outDir) after epoch \(contents.header.epoch) (step \(contents.header.step))")
            }
            resumePoint = try broadcastInts(resumePoint)
            startEpoch = Int(resumePoint[0]); globalStep = Int(resumePoint[1])
        }
        try comm.broadcast(UnsafeMutableRawBufferPointer(net.store.parameterBuffer), root: 0)
        try comm.broadcast(UnsafeMutableRawBufferPointer(net.store.optimizerStateBuffer), root: 0)
        try comm.broadcast(UnsafeMutableRawBufferPointer(net.store.stateBuffer), root: 0)

        // 3. Memory planned once: activations, loss gradient, loaders' slots.
        let maxLocal = (o.batchSize + world - 1) / world
        let evalLocal = max(1, o.evalBatchSize / world)
        net.prepare(maxBatch: max(maxLocal, evalLocal))
        let classes = classNames.count
        let dLogits = UnsafeMutablePointer<Float>.allocate(capacity: max(maxLocal, evalLocal) * classes)
        let predicted = UnsafeMutablePointer<Int32>.allocate(capacity: max(maxLocal, evalLocal))
        defer { dLogits.deallocate(); predicted.deallocate() }
        let reducer = BucketedAllreduce(count: net.store.count, bucketElements: o.bucketElements, communicator: comm)
        let optimizer = SGD(momentum: o.momentum, weightDecay: o.weightDecay, nesterov: o.nesterov)
        let stepsPerEpoch = (train.count + o.batchSize - 1) / o.batchSize
        let schedule = LearningRateSchedule(kind: o.schedule, baseLR: o.lr,
                                            totalSteps: min(o.maxSteps ?? Int.max, stepsPerEpoch * o.epochs), floor: o.lrFloor)
        let trainLoader = BatchLoader(source: ImageSampleSource(set: train, format: format), maxBatch: maxLocal,
                                      prefetch: o.prefetch, workers: o.loaderThreads, skipFailures: o.skipBadRecords)
        let valLoader = val.map { BatchLoader(source: ImageSampleSource(set: $0, format: format), maxBatch: evalLocal,
                                              prefetch: o.prefetch, workers: o.loaderThreads, skipFailures: o.skipBadRecords) }
        defer { trainLoader.shutdown(); valLoader?.shutdown() }
        let progress = ProgressLine(enabled: isRoot && o.progress && isatty(STDERR_FILENO) == 1)

        if isRoot {
            log("distrainer: \(world) rank(s), model \(o.model) (\(net.parameterCount) parameters), \(train.count) training images"
                + (val.map { ", \($0.count) validation images" } ?? "") + ", \(classes) classes, global batch \(o.batchSize)")
        }

        var epochsRun = 0, lastVal: Double?
        var stop = false
        for epoch in startEpoch..<o.epochs where !stop {
            let plan = EpochPlan(sampleCount: train.count, globalBatch: o.batchSize, seed: o.seed, epoch: epoch)
            trainLoader.start(batches: (0..<plan.steps).map { Array(plan.samples(step: $0, rank: comm.rank, worldSize: world)) })
            let t0 = Date()
            var lossSum = 0.0, correct = 0, seen = 0, stepsThisEpoch = 0
            var lr = schedule.rate(atStep: globalStep)
            var failures: [SampleFailure] = []
            for step in 0..<plan.steps {
                if let m = o.maxSteps, globalStep >= m { stop = true; break }
                guard let batch = try trainLoader.next() else { break }
                failures += batch.failures
                var globalCount = plan.batchSize(step: step)
                if o.skipBadRecords { globalCount = Int(try comm.allreduce([Int64(batch.count)], op: .sum)[0]) }
                net.store.zeroGradients()
                if batch.count > 0 {
                    let context = StepContext(seed: o.seed, step: globalStep,
                                              sampleOffset: plan.rankSlice(step: step, rank: comm.rank, worldSize: world).lowerBound)
                    let logits = net.forward(batch.inputs, batch: batch.count, mode: .train, context: context)
                    let r = SoftmaxCrossEntropy.evaluate(logits: logits, labels: batch.labels, batch: batch.count, classes: classes,
                                                         gradScale: 1 / Float(max(globalCount, 1)), dLogits: dLogits)
                    net.backward(batch.inputs, dLogits: dLogits, batch: batch.count, mode: .train)
                    lossSum += r.lossSum; correct += r.correct; seen += batch.count
                }
                trainLoader.recycle(batch)
                lr = schedule.rate(atStep: globalStep)
                if globalCount > 0 {
                    try reducer.reduce(net.store.gradients)
                    optimizer.step(net.store, lr: lr)
                }
                globalStep += 1; stepsThisEpoch += 1
                progress.update(epoch: epoch + 1, epochs: o.epochs, step: step + 1, steps: plan.steps,
                                images: (step + 1) * o.batchSize, seconds: Date().timeIntervalSince(t0),
                                loss: seen > 0 ? lossSum / Double(seen) : 0)
            }
            let stall = trainLoader.waitSeconds
            let trainTotals = try comm.allreduce([lossSum, Double(correct), Double(seen), Double(failures.count), stall], op: .sum)
            let seconds = try comm.allreduce([Date().timeIntervalSince(t0)], op: .max)[0]
            progress.finish()
            if world > 1 {
                // BatchNorm running statistics: the mean over ranks.
                try comm.allreduce(net.store.stateBuffer, op: .sum)
                let inv = 1 / Float(world)
                for i in 0..<net.store.stateCount { net.store.state[i] *= inv }
            }
            var line: [String: Any] = [
                "epoch": epoch + 1, "steps": globalStep, "lr": Double(lr),
                "train_loss": trainTotals[2] > 0 ? trainTotals[0] / trainTotals[2] : 0,
                "train_acc": trainTotals[2] > 0 ? trainTotals[1] / trainTotals[2] : 0,
                "images_per_sec": seconds > 0 ? trainTotals[2] / seconds : 0,
                "seconds": seconds,
                "data_stall": seconds > 0 ? trainTotals[4] / Double(world) / seconds : 0,
                "skipped": Int(trainTotals[3]),
            ]
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
            epochsRun += 1
            if isRoot, let runDir {
                history.append(line)
                try runDir.writeHistory(history)
                let metric = line[metricName(val != nil)] as? Double ?? 0
                let header = CheckpointHeader(model: spec, classes: classNames, network: net, epoch: epoch + 1, step: globalStep,
                                              metrics: line.compactMapValues { $0 as? Double }, mean: format.mean, std: format.std,
                                              options: o.record)
                try Checkpoint.save(net, header: header, to: runDir.file("last.ckpt"))
                if metric > best.metric {
                    best = (metric, epoch + 1)
                    try Checkpoint.save(net, header: header, to: runDir.file("best.ckpt"))
                }
                log(String(format: "epoch %d/%d  train_loss %.4f  train_acc %.4f", epoch + 1, o.epochs,
                           line["train_loss"] as! Double, line["train_acc"] as! Double)
                    + (line["val_acc"].map { String(format: "  val_loss %.4f  val_acc %.4f", line["val_loss"] as! Double, $0 as! Double) } ?? "")
                    + String(format: "  %.0f img/s  %.1fs", line["images_per_sec"] as! Double, seconds))
            }
        }
        let name = metricName(val != nil)
        let bestAll = try broadcastDoubles([best.metric, Double(best.epoch)])
        if isRoot {
            log(String(format: "best %@ %.4f at epoch %d (%@)", name, bestAll[0], Int(bestAll[1]),
                       RunDirectory.join(o.outDir, "best.ckpt")))
        }
        return TrainSummary(epochsRun: epochsRun, steps: globalStep, bestMetricName: name, bestMetric: bestAll[0],
                            bestEpoch: Int(bestAll[1]), finalValAccuracy: lastVal)
    }

    private func metricName(_ hasVal: Bool) -> String { hasVal ? "val_acc" : "train_acc" }

    private func broadcastInts(_ v: [Int64]) throws -> [Int64] {
        var v = v
        try v.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
        return v
    }

    private func broadcastDoubles(_ v: [Double]) throws -> [Double] {
        var v = v
        try v.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
        return v
    }

    /// Gathers every rank's skipped samples to the coordinator, which lists them in
    /// failed_samples.jsonl (nothing disappears silently).
    private func reportFailures(train: [SampleFailure], trainSet: LabeledSet, val: [SampleFailure], valSet: LabeledSet?,
                                epoch: Int, runDir: RunDirectory?) throws {
        guard options.skipBadRecords else { return }
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
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}

extension RunDirectory {
    static func join(_ a: String, _ b: String) -> String { (a as NSString).appendingPathComponent(b) }
}

/// The one-line progress display on rank 0 (only when stderr is a terminal).
final class ProgressLine {
    let enabled: Bool
    private var last = Date.distantPast
    init(enabled: Bool) { self.enabled = enabled }

    func update(epoch: Int, epochs: Int, step: Int, steps: Int, images: Int, seconds: Double, loss: Double) {
        guard enabled, Date().timeIntervalSince(last) > 0.5 || step == steps else { return }
        last = Date()
        let rate = seconds > 0 ? Double(images) / seconds : 0
        let eta = rate > 0 ? Double(steps - step) * seconds / Double(step) : 0
        let text = String(format: "\repoch %d/%d  step %d/%d  %.0f img/s  loss %.4f  ETA %dm%02ds ", epoch, epochs, step, steps,
                          rate, loss, Int(eta) / 60, Int(eta) % 60)
        FileHandle.standardError.write(Data(text.utf8))
    }

    func finish() { if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) } }
}
