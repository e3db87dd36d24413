import Foundation
import Dist
import Model
import Shards
import Support

/// What `distrainer evaluate` is configured with.
public struct EvaluateOptions: Sendable {
    public var checkpoint: String
    public var data: String
    public var outDir: String
    /// Average each sample's probabilities with those of its horizontal mirror.
    public var tta = false
    /// GLOBAL batch (split across ranks).
    public var batchSize = 256
    public var imageField = "image"
    public var labelField = "label"
    public var threads = 1
    /// Convolution backend (`--conv-backend`: onednn, openblas), as in training.
    public var convBackend = "onednn"
    public var loaderThreads = 1
    public var prefetch = 3
    public var cacheMemoryBytes = 0
    /// Skip (count and list) bad manifest lines and unreadable images instead of stopping.
    public var skipBadRecords = false

    public init(checkpoint: String, data: String, outDir: String) {
        self.checkpoint = checkpoint; self.data = data; self.outDir = outDir
    }
}

/// What `distrainer predict` is configured with: image references or a manifest (labels optional).
public struct PredictOptions: Sendable {
    public var checkpoint: String
    public var images: [String] = []
    public var data: String?
    public var topK = 5
    public var tta = false
    public var batchSize = 64
    public var imageField = "image"
    public var labelField = "label"
    public var threads = 1
    /// Convolution backend (`--conv-backend`: onednn, openblas), as in training.
    public var convBackend = "onednn"
    public var loaderThreads = 1
    public var skipBadRecords = false

    public init(checkpoint: String) { self.checkpoint = checkpoint }
}

/// Evaluation and prediction from a checkpoint alone: its header names the architecture, the
/// classes and the input normalisation. Rank 0 reads the checkpoint and the manifest and ships
/// both to every rank; each rank evaluates its contiguous shard; counts are reduced and rank 0
/// writes the results.
public enum CheckpointEvaluation {
    /// Files written to the output folder.
    public static let outputs = ["metrics.json", "classification_report.txt", "confusion_matrix.png",
                                 "confusion_matrix_normalized.png", "errors.jsonl"]

    /// Evaluates the checkpoint on a labelled manifest; returns the metrics (on every rank).
    @discardableResult
    public static func evaluate(_ o: EvaluateOptions, comm: Communicator,
                                log: (String) -> Void = { print($0) }) throws -> ClassificationMetrics {
        guard o.batchSize >= 1 else { throw TrainingError.invalidOption("--batch-size must be positive") }
        BLAS.setThreads(o.threads)
        let manifestOptions = ManifestOptions(imageField: o.imageField, labelField: o.labelField,
                                              onBadRecord: o.skipBadRecords ? .skip : .error)
        let (net, header, set) = try loadModel(checkpoint: o.checkpoint, convBackend: o.convBackend, comm: comm, log: log) { header -> LabeledSet in
            let set = try LabeledSet.load(path: o.data, classes: ClassList(names: header.classes), options: manifestOptions).0
            guard set.count > 0 else { throw TrainingError.invalidOption("\(o.data): no usable records") }
            return set
        }
        let classes = header.classes
        let isRoot = comm.rank == 0
        let outDir: RunDirectory? = isRoot ? try RunDirectory(path: o.outDir) : nil
        let format = try InputFormat(channels: header.model.channels, imageSize: header.model.imageSize, mean: header.mean, std: header.std)
        let local = max(1, o.batchSize / comm.size)
        net.prepare(maxBatch: local)
        let loader = try makeLoader(set: set, format: format, local: local, loaderThreads: o.loaderThreads, prefetch: o.prefetch,
                                    cacheMemoryBytes: o.cacheMemoryBytes, skipFailures: o.skipBadRecords,
                                    metadata: header.model.fusion, comm: comm)
        defer { loader.shutdown() }
        let scratch = UnsafeMutablePointer<Int32>.allocate(capacity: local)
        defer { scratch.deallocate() }
        let t0 = Date()
        let r = try Evaluation.run(net, loader: loader, setCount: set.count, classes: classes.count, localBatch: local,
                                   comm: comm, scratch: scratch, tta: o.tta, collect: .misclassified)
        let seconds = try comm.allreduce([Date().timeIntervalSince(t0)], op: .max)[0]
        let metrics = r.metrics
        // Misclassified samples and unreadable images, gathered to rank 0 in manifest order.
        let errors = try comm.gather(bytes: Array(try JSONEncoder().encode(r.predictions)), root: 0)
        let failed = try comm.gather(bytes: Array(r.failures.map { jsonLine(["image": set.images[$0.index], "line": set.lines[$0.index],
                                                                            "reason": $0.reason]) }
                                                   .joined(separator: "\n").utf8), root: 0)
        guard isRoot, let outDir, let errors, let failed else { return metrics }

        var json: [String: Any] = metrics.summary
        json["count"] = Int(metrics.count)
        json["loss"] = r.meanLoss
        json["skipped"] = r.skipped + set.rejected.count
        json["macro_precision"] = metrics.macroPrecision
        json["macro_recall"] = metrics.macroRecall
        json["classes"] = classes
        json["per_class"] = metrics.perClass(names: classes)
        json["confusion_matrix"] = metrics.confusion.map { $0.map(Int.init) }
        json["calibration_bins"] = metrics.calibration?.table ?? []
        json["tta"] = o.tta ? "flip" : "none"
        json["checkpoint"] = o.checkpoint
        json["data"] = o.data
        json["model"] = header.model.architecture
        json["ranks"] = comm.size
        json["seconds"] = seconds
        try outDir.writeJSON(json, to: "metrics.json")
        let report = metrics.report(names: classes)
        try AtomicFile.write(Data(report.utf8), to: outDir.file("classification_report.txt"))
        try ConfusionMatrixPlot.render(counts: metrics.confusion, names: classes, normalized: false,
                                       title: "Confusion matrix (counts)").writePNG(to: outDir.file("confusion_matrix.png"))
        try ConfusionMatrixPlot.render(counts: metrics.confusion, names: classes, normalized: true,
                                       title: "Confusion matrix (normalised by true class)")
            .writePNG(to: outDir.file("confusion_matrix_normalized.png"))
        let wrong = try errors.flatMap { try JSONDecoder().decode([EvaluationResult.Prediction].self, from: Data($0)) }
            .sorted { $0.index < $1.index }
        let lines = wrong.map { p -> String in
            let t = Int(set.labels[p.index])
            return jsonLine(["image": set.images[p.index], "line": set.lines[p.index], "true": classes[t], "predicted": classes[p.predicted],
                             "confidence": rounded(p.probabilities[p.predicted]), "true_probability": rounded(p.probabilities[t])])
        }
        try AtomicFile.write(Data(lines.map { $0 + "\n" }.joined().utf8), to: outDir.file("errors.jsonl"))
        let failedLines = failed.compactMap { $0.isEmpty ? nil : String(decoding: $0, as: UTF8.self) }
            + set.rejected.map { jsonLine(["reason": $0, "stage": "manifest"]) }
        if !failedLines.isEmpty {
            try AtomicFile.write(Data(failedLines.map { $0 + "\n" }.joined().utf8), to: outDir.file("failed_samples.jsonl"))
            log("skipped \(r.skipped + set.rejected.count) bad record(s), listed in \(outDir.file("failed_samples.jsonl"))")
        }
        log(report)
        log(String(format: "%d images, %d rank(s)%@: accuracy %.4f  macro_f1 %.4f  balanced_accuracy %.4f  top5 %.4f  ece %.4f  (%.1fs)",
                   Int(metrics.count), comm.size, o.tta ? ", flip TTA" : "", metrics.accuracy, metrics.macroF1, metrics.balancedAccuracy,
                   metrics.topK(5) ?? 0, metrics.ece ?? 0, seconds))
        log("wrote \(outputs.map { outDir.file($0) }.joined(separator: ", "))")
        return metrics
    }

    /// Predicts the top-k classes of each image; rank 0 calls `emit` with one JSON line per input,
    /// in input order: `{"image", "top": [{"class", "probability"}…]}` (plus `"label"` when the
    /// manifest gave one, or `"error"` for an unreadable image with --skip-bad-records).
    public static func predict(_ o: PredictOptions, comm: Communicator, emit: (String) -> Void) throws {
        guard o.topK >= 1 else { throw TrainingError.invalidOption("--top-k must be at least 1") }
        guard (o.data == nil) != o.images.isEmpty else {
            throw TrainingError.invalidOption("give either image paths/URLs or --data MANIFEST (not both)")
        }
        BLAS.setThreads(o.threads)
        let (net, header, input) = try loadModel(checkpoint: o.checkpoint, convBackend: o.convBackend, comm: comm,
                                                 log: { FileHandle.standardError.write(Data("distrainer: \($0)\n".utf8)) }) { header -> PredictInput in
            let classes = ClassList(names: header.classes)
            var set = LabeledSet(manifest: o.data ?? "command line", images: [], paths: [], labels: [], lines: [], groups: [],
                                 rejected: [], fingerprint: nil)
            var given: [String] = []
            if let data = o.data {
                var options = ManifestOptions(imageField: o.imageField, labelField: o.labelField,
                                              onBadRecord: o.skipBadRecords ? .skip : .error)
                options.labelRequired = false
                for r in try Manifest.load(path: data, options: options).records {
                    set.images.append(r.image); set.paths.append(r.path); set.lines.append(r.line)
                    set.labels.append(Int32(classes.index(of: r.label) ?? 0)); set.groups.append(""); given.append(r.label)
                    set.latitudes.append(r.metadata.lat); set.longitudes.append(r.metadata.lon); set.sources.append(r.metadata.source)
                }
            } else {
                for (i, image) in o.images.enumerated() {
                    if case let .failure(p) = ImageReference.parse(image) {
                        throw TrainingError.invalidOption("argument \(i + 1) \"\(image)\": \(p.reason) (\(p.detail))")
                    }
                    set.images.append(image); set.paths.append(resolve(image)); set.lines.append(i + 1)
                    set.labels.append(0); set.groups.append(""); given.append("")
                    set.latitudes.append(nil); set.longitudes.append(nil); set.sources.append(nil)
                }
            }
            guard set.count > 0 else { throw TrainingError.invalidOption("\(set.manifest): no images to predict") }
            return PredictInput(set: set, labels: given)
        }
        let set = input.set
        let classes = header.classes
        let format = try InputFormat(channels: header.model.channels, imageSize: header.model.imageSize, mean: header.mean, std: header.std)
        let local = max(1, o.batchSize / comm.size)
        net.prepare(maxBatch: local)
        let loader = try makeLoader(set: set, format: format, local: local, loaderThreads: o.loaderThreads, prefetch: 2,
                                    cacheMemoryBytes: 0, skipFailures: o.skipBadRecords,
                                    metadata: header.model.fusion, comm: comm)
        defer { loader.shutdown() }
        let k = min(o.topK, classes.count)
        var mine: [(Int, String)] = []
        let shard = Evaluation.shard(count: set.count, rank: comm.rank, size: comm.size)
        let failures = try Evaluation.predict(net, loader: loader, shard: shard, classes: classes.count, localBatch: local,
                                              tta: o.tta, labels: false) { batch, probabilities, _ in
            for j in 0..<batch.count {
                let p = probabilities + j * classes.count
                let order = (0..<classes.count).sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
                let i = batch.indices[j]
                var line: [String: Any] = ["image": set.images[i],
                                           "top": order.prefix(k).map { ["class": classes[$0], "probability": rounded(p[$0])] }]
                if !input.labels[i].isEmpty { line["label"] = input.labels[i] }
                mine.append((i, jsonLine(line)))
            }
        }
        mine += failures.map { ($0.index, jsonLine(["image": set.images[$0.index], "error": $0.reason])) }
        let encoded = try JSONEncoder().encode(mine.map { [String($0.0), $0.1] })
        guard let all = try comm.gather(bytes: Array(encoded), root: 0) else { return }
        let lines = try all.flatMap { try JSONDecoder().decode([[String]].self, from: Data($0)) }
            .map { (Int($0[0])!, $0[1]) }.sorted { $0.0 < $1.0 }
        for (_, line) in lines { emit(line) }
    }

    /// A file path relative to the working directory made absolute; URLs unchanged.
    static func resolve(_ image: String) -> String {
        switch ImageReference.parse(image) {
        case let .success(.path(path)):
            return path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
        case let .success(.file(path)): return path
        default: return image
        }
    }

    static func rounded(_ v: Float) -> Double { (Double(v) * 1e6).rounded() / 1e6 }

    /// The images to predict and the labels their manifest gave ("" for none).
    private struct PredictInput: Codable {
        var set: LabeledSet
        var labels: [String]
    }

    private struct Shipment<T: Codable>: Codable {
        var header: CheckpointHeader
        var data: T
    }

    /// Rank 0 reads the checkpoint and prepares the data (`data`, given the header); every rank
    /// builds the network from the header on `convBackend` and receives rank 0's parameters and
    /// statistics (the checkpoint's OIHW values in the backend's layouts).
    static func loadModel<T: Codable>(checkpoint: String, convBackend: String, comm: Communicator, log: (String) -> Void,
                                      data: (CheckpointHeader) throws -> T) throws -> (Network, CheckpointHeader, T) {
        var contents: Checkpoint.Contents?
        let shipment = try DatasetExchange.share(comm) { () -> Shipment<T> in
            let c = try Checkpoint.load(path: checkpoint)
            contents = c
            return Shipment(header: c.header, data: try data(c.header))
        }
        let net = try Architectures.build(shipment.header.model, backend: convBackend, algorithm: "auto", weights: "blocked",
                                          agreeingOn: comm) { log("warning: \($0)") }
        if let contents { try Checkpoint.apply(contents, to: net, path: checkpoint, optimizerState: false) }
        for buffer in [net.store.parameterBuffer, net.store.stateBuffer] where !buffer.isEmpty {
            try comm.broadcast(UnsafeMutableRawBufferPointer(buffer), root: 0)
        }
        return (net, shipment.header, shipment.data)
    }

    private static func makeLoader(set: LabeledSet, format: InputFormat, local: Int, loaderThreads: Int, prefetch: Int,
                                   cacheMemoryBytes: Int, skipFailures: Bool, metadata: MetadataEncoding?,
                                   comm: Communicator) throws -> BatchLoader {
        var c = ImageCacheOptions(channels: format.channels, imageSize: format.imageSize)
        c.memoryBytes = cacheMemoryBytes
        c.batchSize = local
        c.decodeWorkers = loaderThreads
        let cache = try ImageCache(options: c)
        return BatchLoader(source: ImageSampleSource(set: set, format: format, cache: cache, metadata: metadata), maxBatch: local,
                           prefetch: prefetch, workers: loaderThreads, skipFailures: skipFailures)
    }
}
