import Foundation
import Model
import Shards

/// Everything a `train` run is configured with (the CLI fills it; saved with the run).
public struct TrainOptions: Codable, Sendable {
    public var trainManifest: String
    public var valManifest: String?
    public var outDir: String
    /// Where the coordinator writes the run's files instead of `outDir` (a cv fold trained away
    /// from the job's rank 0 writes on its own host; the files are shipped to `outDir` later).
    public var writeDir: String? = nil
    /// A fixed class list (classes.json) instead of the training labels' own.
    public var classesFile: String? = nil
    /// Manifest fields holding the image reference, the label and the group key.
    public var imageField = "image"
    public var labelField = "label"
    public var groupField: String? = nil
    /// Map tiles: image URLs built from each record's lat/lon (`--tile-url`, `--tile-zoom`).
    public var tiles: MapTiles? = nil

    /// The per-rank image cache for `rank` processing up to `localBatch` images per step.
    /// Without `maxImageBytes`, the response cap is sized so the disk tier holds two batches
    /// (between 1 MB and 32 MB).
    public func cacheOptions(rank: Int, localBatch: Int) -> ImageCacheOptions {
        var c = ImageCacheOptions(channels: channels, imageSize: imageSize)
        c.memoryBytes = cacheMemoryBytes
        c.diskBytes = cacheDiskBytes
        c.policy = cachePolicy
        c.batchSize = localBatch
        c.decodeWorkers = loaderThreads
        c.fetch.concurrency = fetchConcurrency
        c.fetch.maxRequestsPerSecond = maxRequestsPerSecond
        if let m = maxImageBytes { c.fetch.maxResponseBytes = m }
        else if cacheDiskBytes > 0 { c.fetch.maxResponseBytes = min(32 << 20, max(1 << 20, cacheDiskBytes / (2 * max(localBatch, 1)))) }
        if cacheDiskBytes > 0 {
            let base = cacheDir ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("distrainer-cache")
            c.directory = (base as NSString).appendingPathComponent("rank-\(rank)")
        }
        return c
    }

    /// How manifests are read: fields, and skip or stop on bad lines.
    public var manifestOptions: ManifestOptions {
        ManifestOptions(imageField: imageField, labelField: labelField, groupField: groupField,
                        onBadRecord: skipBadRecords ? .skip : .error, tiles: tiles)
    }
    public var model: String = "refcnn"
    public var widths: [Int]? = nil
    public var batchNorm = true
    public var dropout: Float = 0
    /// Hidden widths of an MLP classifier head (BatchNorm1d + ReLU + dropout each).
    public var head: [Int]? = nil
    public var headDropout: Float? = nil
    /// Torchvision-style safetensors weights loaded (by tensor name) before training.
    public var pretrained: String? = nil
    /// Fine-tuning: what stays fixed (`none`, `backbone` or a layer-name prefix such as `layer3`),
    /// the 1-based epoch from which everything trains (nil: never), and the backbone's
    /// learning-rate multiplier.
    public var freeze = "none"
    public var unfreezeAtEpoch: Int? = nil
    public var backboneLRMultiplier: Float = 1
    /// Image + metadata fusion: lat/lon (standardised on the training split) and `source`
    /// one-hot through an MLP, concatenated with the pooled image features.
    public var fusion = false
    public var channels = 3
    public var imageSize = 32
    public var mean: [Float] = [0.5]
    public var std: [Float] = [0.5]
    public var epochs = 10
    /// Use at most this many records of each manifest, spread evenly over it (quick runs).
    public var maxSamples: Int? = nil
    /// Optimizer steps after which training stops (nil: run all epochs).
    public var maxSteps: Int? = nil
    /// The GLOBAL batch: split across ranks.
    public var batchSize = 128
    public var evalBatchSize = 256
    public var lr: Float = 0.05
    public var schedule: LearningRateSchedule.Kind = .constant
    /// Lowest rate of a decaying schedule (cosine's floor, plateau's minimum).
    public var lrFloor: Float = 0
    public var momentum: Float = 0.9
    public var weightDecay: Float = 0
    public var nesterov = false
    // Losses, optimizers and schedules (factories in TrainOptions+Recipe.swift).
    /// Learning rate per 256 images: the rate is lrBase · batchSize / 256 (overrides `lr`).
    public var lrBase: Float? = nil
    public var optimizer: OptimizerKind = .sgd
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    /// Linear warm-up, in epochs (may be fractional) or steps (not both).
    public var warmupEpochs: Double? = nil
    public var warmupSteps: Int? = nil
    /// `step`: epochs between reductions; `step`, `multistep`, `plateau`: factor per reduction.
    public var stepSize = 30
    public var gamma: Float = 0.1
    /// `multistep`: epochs at which the rate is multiplied by `gamma`.
    public var milestones: [Int] = []
    /// Reduce-on-plateau: the monitored metric (nil: val_loss with a validation set, else train_loss).
    public var plateauMetric: String? = nil
    public var plateauPatience = 10
    public var plateauThreshold = 1e-4
    public var plateauCooldown = 0
    public var loss: LossKind = .ce
    public var focalGamma: Float = 2
    /// Focal α: one value for every class, or one per class.
    public var focalAlpha: [Float]? = nil
    public var labelSmoothing: Float = 0
    /// Class weights of weighted-ce: "auto" (balanced, from the training counts), "effective"
    /// (effective number of samples), or a class_weights.json file (its "balanced" weights).
    public var classWeights = "auto"
    public var seed: UInt64 = 1
    /// Virtual shards of the sampler (nil: a default from the batch and world size; a resumed
    /// run keeps its checkpoint's value).
    public var virtualShards: Int? = nil
    /// Also write last.ckpt every this many optimizer steps (0: only at the end of each epoch).
    public var checkpointEvery = 0
    /// Gradient allreduce bucket size in floats.
    public var bucketElements = 1 << 20
    /// Start each bucket's allreduce during backward, as soon as its gradients are final
    /// (`--overlap-allreduce on`), instead of all of them after backward.
    public var overlapAllreduce = true
    public var threads = 1
    /// Convolution backend (`--conv-backend`: onednn, openblas), oneDNN's algorithm (`--conv-algo`)
    /// and how it keeps convolution weights (`--conv-weights`: blocked, oihw).
    public var convBackend = "onednn"
    public var convAlgorithm = "auto"
    public var convWeights = "blocked"
    public var loaderThreads = 1
    /// Most batches decoded ahead (nil: auto); the depth adapts below it from the measured
    /// step and load times (see `BatchLoader`).
    public var prefetch: Int? = nil
    /// Memory the decoded-ahead batches of one loader may take.
    public static let prefetchMemoryBytes = 256 << 20

    /// The loader's maximum depth for batches of `batchFloats` floats: `prefetch` (auto: 16),
    /// at most what fits in `prefetchMemoryBytes`, at least 2.
    public func prefetchDepth(batchFloats: Int) -> Int {
        max(2, min(prefetch ?? 16, Self.prefetchMemoryBytes / max(1, 4 * batchFloats)))
    }
    /// Per-rank image cache: memory tier (decoded, resized) and disk tier (fetched files) bounds.
    public var cacheMemoryBytes = 1 << 30
    public var cacheDiskBytes = 0
    /// The disk tier's folder (each rank uses `rank-R` inside it); default under the temp dir.
    public var cacheDir: String? = nil
    public var cachePolicy: EvictionPolicy = .lookAhead
    /// Remote fetching: transfers in flight per rank, per-host request rate, response size cap.
    public var fetchConcurrency = 16
    public var maxRequestsPerSecond: Double? = nil
    public var maxImageBytes: Int? = nil
    public var skipBadRecords = false
    /// Stop when more than this fraction of an epoch's samples failed to load.
    public var maxBadFraction = 0.5
    /// Skip (and list in failed_samples.jsonl) samples whose image cannot be read, instead of
    /// stopping; on with `skipBadRecords` or an explicit `--max-bad-fraction`.
    public var skipFailedSamples = false
    var skipsFailures: Bool { skipBadRecords || skipFailedSamples }
    public var resume = false
    public var progress = true
    /// Accumulation, clipping, EMA, early stopping, best-K (TrainOptions+RunControl.swift).
    public var runControl = RunControlOptions()
    /// Training-time augmentation (never applied to validation data), where the normalisation
    /// mean/std come from, and (debug) a folder for each epoch's first augmented batch.
    public var augment = AugmentOptions()
    public var normalization: Normalization = .custom
    public var dumpAugmented: String? = nil

    public init(trainManifest: String, valManifest: String?, outDir: String) {
        self.trainManifest = trainManifest; self.valManifest = valManifest; self.outDir = outDir
    }

    /// Flat key → value view, saved in checkpoints.
    public var record: [String: String] {
        var r: [String: String] = [
            "train": trainManifest, "out": outDir, "model": model, "batch_norm": "\(batchNorm)",
            "dropout": "\(dropout)", "channels": "\(channels)", "image_size": "\(imageSize)",
            "mean": mean.map { "\($0)" }.joined(separator: ","), "std": std.map { "\($0)" }.joined(separator: ","),
            "epochs": "\(epochs)", "batch_size": "\(batchSize)", "lr": "\(lr)", "lr_schedule": schedule.rawValue,
            "lr_floor": "\(lrFloor)", "momentum": "\(momentum)",
            "weight_decay": "\(weightDecay)", "nesterov": "\(nesterov)", "seed": "\(seed)",
            "bucket_elements": "\(bucketElements)", "skip_bad_records": "\(skipBadRecords)", "max_bad_fraction": "\(maxBadFraction)",
        ]
        if let v = valManifest { r["val"] = v }
        if let c = classesFile { r["classes"] = c }
        r["image_field"] = imageField
        r["label_field"] = labelField
        if let g = groupField { r["group_field"] = g }
        if let t = tiles { r["tile_url"] = t.template; r["tile_zoom"] = "\(t.zoom)" }
        if let w = widths { r["widths"] = w.map { "\($0)" }.joined(separator: ",") }
        if let h = head { r["head"] = h.map { "\($0)" }.joined(separator: ",") }
        if let p = pretrained { r["pretrained"] = p }
        r["freeze"] = freeze
        if let u = unfreezeAtEpoch { r["unfreeze_at_epoch"] = "\(u)" }
        r["backbone_lr_mult"] = "\(backboneLRMultiplier)"
        r["fusion"] = "\(fusion)"
        if let m = maxSteps { r["max_steps"] = "\(m)" }
        if let m = maxSamples { r["max_samples"] = "\(m)" }
        r["cache_mem"] = "\(cacheMemoryBytes)"; r["cache_disk"] = "\(cacheDiskBytes)"; r["cache_policy"] = cachePolicy.rawValue
        r["fetch_concurrency"] = "\(fetchConcurrency)"
        if let q = maxRequestsPerSecond { r["max_requests_per_sec"] = "\(q)" }
        if let v = virtualShards { r["virtual_shards"] = "\(v)" }
        if checkpointEvery > 0 { r["checkpoint_every"] = "\(checkpointEvery)" }
        r.merge(recipeRecord) { a, _ in a }
        r["overlap_allreduce"] = overlapAllreduce ? "on" : "off"
        r["conv_backend"] = convBackend; r["conv_algo"] = convAlgorithm; r["conv_weights"] = convWeights
        r["threads"] = "\(threads)"
        r.merge(runControl.record) { a, _ in a }
        r["augment"] = augment.summary; r["normalize"] = normalization.rawValue
        return r
    }
}
