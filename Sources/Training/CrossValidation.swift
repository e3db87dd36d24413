import Foundation
import Dist
import Model
import Shards
import Support

/// Options of `distrainer cv`: a training template plus the fold layout.
public struct CVOptions: Sendable {
    /// Training options for every fold; `outDir` is the CV run directory, `valManifest` unused.
    public var training: TrainOptions
    public var folds = 5
    /// Ranks that train one fold together (nil: world size / folds, at least 1).
    public var ranksPerFold: Int? = nil
    public init(training: TrainOptions) { self.training = training }
}

/// One fold's outcome, as written to `fold-K/metrics.json` and gathered into the summary.
public struct FoldResult: Codable, Sendable {
    public var fold: Int
    public var status: String            // "complete" or "failed"
    public var error: String?
    public var group: Int
    public var ranks: Int
    public var trainCount: Int
    public var valCount: Int
    public var metrics: [String: Double]
    /// [true][predicted] counts over the held-out records.
    public var confusion: [[Int64]]
    public var seconds: Double
}

/// k-fold cross-validation with folds trained in parallel by groups of ranks.
///
/// The world's rank 0 reads the manifest once, assigns folds (stratified by label, records that
/// share an image reference kept in one fold: `GroupedStratifier`), writes `folds.json`, and ships
/// records and folds to every rank. `MPI_Comm_split` makes G groups of R ranks (`ranksPerFold`;
/// ranks beyond G·R are idle and reported); group g trains folds g, g+G, g+2G, … in turn with
/// every collective on its own communicator. Only the world's rank 0 writes RUN_DIR (no shared
/// file system needed): group 0's folds go straight to `fold-K/` (history, checkpoints,
/// `oof.jsonl`, `metrics.json` when the fold is complete); the other groups' roots write theirs
/// on their own host (`FoldTransfer`) and ship them to rank 0 at the end, when rank 0 also
/// gathers the fold results and writes `cv_summary.json`.
/// With `resume`, complete folds are skipped and a partly trained fold resumes from its checkpoint.
public final class CrossValidation {
    let options: CVOptions
    let world: Communicator
    let log: (String) -> Void

    public init(options: CVOptions, world: Communicator, log: @escaping (String) -> Void = { print($0) }) {
        self.options = options; self.world = world; self.log = log
    }

    struct Shipment: Codable {
        var data: TrainingData
        var folds: [Int]
        /// Folds RUN_DIR already holds complete (with `resume`).
        var done: [FoldResult] = []
    }

    @discardableResult
    public func run() throws -> [FoldResult] {
        let t = options.training, k = options.folds
        guard k >= 2 else { throw TrainingError.invalidOption("--folds must be at least 2") }
        let runDir = (t.outDir as NSString)
        if world.rank == 0 { try FileManager.default.createDirectory(atPath: t.outDir, withIntermediateDirectories: true) }

        // 1. Folds, decided once by the coordinator.
        let shipment = try DatasetExchange.share(world) { () -> Shipment in
            let fixed = try t.classesFile.map { try ClassList.load(path: $0) }
            var (set, classes) = try LabeledSet.load(path: t.trainManifest, classes: fixed, options: t.manifestOptions)
            set = set.limited(to: t.maxSamples)
            guard set.count >= k else { throw TrainingError.invalidOption("\(t.trainManifest): \(set.count) records cannot make \(k) folds") }
            let folds = GroupedStratifier.assign(labels: set.labels.map(Int.init), keys: [set.images, set.groups],
                                                 weights: Array(repeating: 1, count: k), seed: t.seed)
            try ClassList(names: classes.names).save(to: runDir.appendingPathComponent("classes.json"))
            let perFold: [[String: Any]] = (0..<k).map { f in
                var counts = [Int](repeating: 0, count: classes.names.count)
                for (i, p) in folds.enumerated() where p == f { counts[Int(set.labels[i])] += 1 }
                return ["fold": f, "count": counts.reduce(0, +), "class_counts": Dictionary(uniqueKeysWithValues: zip(classes.names, counts))]
            }
            let foldsJSON: [String: Any] = ["folds": k, "seed": t.seed, "manifest": t.trainManifest, "assignment": folds,
                                            "per_fold": perFold, "grouped_by": ["image"] + (t.groupField.map { [$0] } ?? []), "manifest_fingerprint": set.fingerprint ?? ""]
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: foldsJSON, options: [.sortedKeys]),
                                 to: runDir.appendingPathComponent("folds.json"))
            var done: [FoldResult] = []
            if t.resume {
                for f in 0..<k {
                    let metrics = runDir.appendingPathComponent("fold-\(f)/metrics.json")
                    if let data = FileManager.default.contents(atPath: metrics),
                       let r = try? JSONDecoder().decode(FoldResult.self, from: data), r.status == "complete" { done.append(r) }
                }
            }
            return Shipment(data: TrainingData(train: set, val: nil, classes: classes.names), folds: folds, done: done)
        }

        // 2. Groups of ranks.
        let r = max(1, options.ranksPerFold ?? world.size / k)
        guard r <= world.size else { throw TrainingError.invalidOption("--ranks-per-fold \(r) exceeds the \(world.size) ranks") }
        let groups = min(k, world.size / r)
        let myGroup = world.rank < groups * r ? world.rank / r : groups   // `groups` = the idle ranks
        let comm = try world.split(color: myGroup, key: world.rank)
        if world.rank == 0 {
            let idle = world.size - groups * r
            log("distrainer cv: \(k) folds, \(world.size) rank(s) in \(groups) group(s) of \(r)"
                + (idle > 0 ? "; \(idle) idle rank(s) (use --ranks-per-fold to give them work)" : "")
                + (k > groups ? "; groups train \((k + groups - 1) / groups) folds in turn" : ""))
        }

        // 3. This group's folds.
        var mine: [FoldResult] = []
        let myFolds = myGroup < groups ? Array(stride(from: myGroup, to: k, by: groups)) : []
        // Group 0's root is the world's rank 0: it writes RUN_DIR itself; other groups stage.
        let staging = FoldTransfer.stagingDirectory(for: t.outDir)
        let writeRoot = myGroup == 0 ? t.outDir : staging
        for fold in myFolds {
            mine.append(try runFold(fold, group: myGroup, comm: comm, shipment: shipment, writeRoot: writeRoot))
        }
        // Folds trained away from rank 0 move into RUN_DIR.
        let shipped = comm.rank == 0 && myGroup > 0 ? FoldTransfer.files(in: staging, folds: myFolds) : []
        try FoldTransfer.ship(shipped, from: staging, to: t.outDir, world: world)

        // 4. Summary on the world's rank 0.
        let bytes = comm.rank == 0 && myGroup < groups ? Array(try JSONEncoder().encode(mine)) : []
        let gathered = try world.gather(bytes: bytes, root: 0)
        if !shipped.isEmpty {
            // Rank 0 has written them (it joined the gather above only after that).
            for fold in myFolds { try? FileManager.default.removeItem(atPath: (staging as NSString).appendingPathComponent("fold-\(fold)")) }
            try? FileManager.default.removeItem(atPath: staging)   // only when empty
        }
        guard let gathered else { return mine }
        let results = try gathered.filter { !$0.isEmpty }.flatMap { try JSONDecoder().decode([FoldResult].self, from: Data($0)) }
            .sorted { $0.fold < $1.fold }
        try writeSummary(results, classes: shipment.data.classes, total: shipment.data.train.count)
        return results
    }

    /// Trains and evaluates `fold`; the group root writes its files under `writeRoot/fold-K`.
    private func runFold(_ fold: Int, group: Int, comm: Communicator, shipment: Shipment, writeRoot: String) throws -> FoldResult {
        let t = options.training
        let dir = ((t.outDir as NSString).appendingPathComponent("fold-\(fold)"))
        let local = ((writeRoot as NSString).appendingPathComponent("fold-\(fold)"))
        if let r = shipment.done.first(where: { $0.fold == fold }) {
            if comm.rank == 0 { log("fold \(fold): complete in \(dir), skipped") }
            return r
        }
        let metricsPath = (local as NSString).appendingPathComponent("metrics.json")
        // A fold finished by an earlier run but not yet in RUN_DIR: its group root has the result.
        var done: [UInt8] = []
        if t.resume, comm.rank == 0, let data = FileManager.default.contents(atPath: metricsPath),
           let r = try? JSONDecoder().decode(FoldResult.self, from: data), r.status == "complete" { done = Array(data) }
        done = try comm.broadcast(bytes: done, root: 0)
        if !done.isEmpty {
            if comm.rank == 0 { log("fold \(fold): complete in \(dir), skipped") }
            return try JSONDecoder().decode(FoldResult.self, from: Data(done))
        }

        let all = shipment.data.train
        let trainIdx = shipment.folds.indices.filter { shipment.folds[$0] != fold }
        let valIdx = shipment.folds.indices.filter { shipment.folds[$0] == fold }
        let data = TrainingData(train: all.subset(trainIdx), val: all.subset(valIdx), classes: shipment.data.classes)
        var o = t
        o.outDir = dir
        o.writeDir = local == dir ? nil : local
        o.valManifest = (dir as NSString).appendingPathComponent("val.jsonl")
        o.trainManifest = (dir as NSString).appendingPathComponent("train.jsonl")
        if comm.rank == 0 {
            try FileManager.default.createDirectory(atPath: local, withIntermediateDirectories: true)
            // The fold's own manifests: `distrainer train --train fold-K/train.jsonl --val fold-K/val.jsonl
            // --classes classes.json` reproduces this fold.
            for (name, set) in [("train.jsonl", data.train), ("val.jsonl", data.val!)] {
                try AtomicFile.write(Data((set.manifestLines(classes: data.classes).joined(separator: "\n") + "\n").utf8),
                                     to: (local as NSString).appendingPathComponent(name))
            }
            log("fold \(fold): group \(group) (\(comm.size) rank(s)), \(trainIdx.count) training / \(valIdx.count) held-out records")
        }
        let start = Date()
        let trainer = Trainer(options: o, communicator: comm, log: { [log] in log("  fold \(fold): \($0)") })
        var result = FoldResult(fold: fold, status: "complete", error: nil, group: group, ranks: comm.size,
                                trainCount: trainIdx.count, valCount: valIdx.count, metrics: [:], confusion: [], seconds: 0)
        do {
            let summary = try trainer.train(data)
            guard let net = trainer.network else { throw TrainingError.io("fold \(fold): no trained network") }
            try predictOutOfFold(net, data: data, fold: fold, dir: local, comm: comm, into: &result)
            result.metrics["best_" + summary.bestMetricName] = summary.bestMetric
        } catch let e as TrainingError {
            guard case .tooManyFailures = e else { throw e }
            // Raised on every rank of the group together: record the failure, go on with other folds.
            result.status = "failed"
            result.error = e.description
            if comm.rank == 0 { log("fold \(fold): FAILED: \(e)") }
        }
        result.seconds = try comm.allreduce([Date().timeIntervalSince(start)], op: .max)[0]
        if comm.rank == 0 {
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            try AtomicFile.write(try enc.encode(result), to: metricsPath)
        }
        return result
    }

    /// Predicts every held-out record once with the fold's final model; the group root writes
    /// `oof.jsonl` (image reference as written, true label, predicted label, probabilities).
    private func predictOutOfFold(_ net: Network, data: TrainingData, fold: Int, dir: String, comm: Communicator,
                                  into result: inout FoldResult) throws {
        let t = options.training
        let val = data.val!
        let format = try InputFormat(channels: t.channels, imageSize: t.imageSize, mean: t.mean, std: t.std)
        let local = max(1, t.evalBatchSize / comm.size)
        net.prepare(maxBatch: max(net.maxBatch, local))
        let cache = try ImageCache(options: t.cacheOptions(rank: MPIRuntime.isActive ? MPIRuntime.worldRank : comm.rank, localBatch: local))
        let loader = BatchLoader(source: ImageSampleSource(set: val, format: format, cache: cache, metadata: net.spec.fusion), maxBatch: local,
                                 prefetch: t.prefetchDepth(batchFloats: local * format.sampleCount), workers: t.loaderThreads, skipFailures: t.skipsFailures)
        defer { loader.shutdown() }
        let scratch = UnsafeMutablePointer<Int32>.allocate(capacity: local)
        defer { scratch.deallocate() }
        let r = try Evaluation.run(net, loader: loader, setCount: val.count, classes: data.classes.count, localBatch: local,
                                   comm: comm, scratch: scratch, collect: .all)
        let gathered = try comm.gather(bytes: Array(try JSONEncoder().encode(r.predictions)), root: 0)
        result.confusion = r.confusion
        result.metrics = r.metrics.summary
        result.metrics["loss"] = r.meanLoss
        result.metrics["count"] = Double(r.count)
        guard let gathered else { return }
        let predictions = try gathered.flatMap { try JSONDecoder().decode([EvaluationResult.Prediction].self, from: Data($0)) }
            .sorted { $0.index < $1.index }
        let lines = predictions.map { p in
            jsonLine(["image": val.images[p.index], "label": data.classes[Int(val.labels[p.index])],
                      "predicted": data.classes[p.predicted], "fold": fold,
                      "probabilities": p.probabilities.map { (Double($0) * 1e6).rounded() / 1e6 }])
        }
        try AtomicFile.write(Data((lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")).utf8),
                             to: (dir as NSString).appendingPathComponent("oof.jsonl"))
    }

    private func writeSummary(_ results: [FoldResult], classes: [String], total: Int) throws {
        let t = options.training
        let complete = results.filter { $0.status == "complete" }
        let names = ["accuracy", "macro_f1", "balanced_accuracy", "weighted_f1", "loss"]
        var stats: [String: [String: Double]] = [:]
        for name in names {
            let v = complete.compactMap { $0.metrics[name] }
            guard !v.isEmpty else { continue }
            let mean = v.reduce(0, +) / Double(v.count)
            let std = v.count > 1 ? (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count - 1)).squareRoot() : 0
            stats[name] = ["mean": mean, "std": std]
        }
        // Out-of-fold metrics: every training record predicted once, by the fold that held it out.
        var oof = [[Int64]](repeating: [Int64](repeating: 0, count: classes.count), count: classes.count)
        for r in complete { for i in r.confusion.indices { for j in r.confusion[i].indices { oof[i][j] += r.confusion[i][j] } } }
        let oofMetrics = ClassificationMetrics(confusion: oof)
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        let foldsJSON = try JSONSerialization.jsonObject(with: try enc.encode(results))
        let summary: [String: Any] = [
            "folds": foldsJSON, "mean_std": stats, "oof": oofMetrics.summary.merging(["count": Double(oofMetrics.count)]) { a, _ in a },
            "oof_confusion_matrix": oof, "classes": classes, "records": total,
            "complete_folds": complete.count, "failed_folds": results.filter { $0.status != "complete" }.map(\.fold),
        ]
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .prettyPrinted]),
                             to: (t.outDir as NSString).appendingPathComponent("cv_summary.json"))
        func cell(_ v: Double?) -> String { v.map { String(format: "%9.4f", $0) } ?? "        -" }
        func left(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
        var table = "fold   status     accuracy  macro_f1   bal_acc   seconds\n"
        for r in results {
            table += left("\(r.fold)", 7) + left(r.status, 9) + cell(r.metrics["accuracy"]) + " " + cell(r.metrics["macro_f1"]) + " "
                + cell(r.metrics["balanced_accuracy"]) + String(format: " %9.1f", r.seconds) + "\n"
        }
        for key in ["mean", "std"] {
            table += left(key, 16) + cell(stats["accuracy"]?[key]) + " " + cell(stats["macro_f1"]?[key]) + " "
                + cell(stats["balanced_accuracy"]?[key]) + "\n"
        }
        table += left("oof", 16) + cell(oofMetrics.accuracy) + " " + cell(oofMetrics.macroF1) + " " + cell(oofMetrics.balancedAccuracy)
            + "   (\(oofMetrics.count) out-of-fold predictions)"
        log(table)
        log("summary: \((t.outDir as NSString).appendingPathComponent("cv_summary.json"))")
    }
}
