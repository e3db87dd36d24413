import ArgumentParser
import Dist
import Model
import Shards
import Training

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a classifier on a JSONL manifest (data-parallel under mpirun).",
        discussion: """
        Run as `mpirun -n N distrainer train …` for N data-parallel ranks, or directly for one.
        --batch-size is the GLOBAL batch: each rank computes its part and gradients are averaged
        by allreduce. Rank 0 writes RUN_DIR: history.jsonl, last.ckpt, best.ckpt, classes.json.
        """)

    @OptionGroup var training: TrainingOptionGroup
    @Option(help: "Validation manifest.") var val: String?

    func run() throws {
        let options = try training.options(valManifest: val)   // before MPI: errors map to --config keys
        let config = try RunConfig.resolvedYAML(of: self, valid: RunConfig.options(of: Self.self))
        try MPISession.run { comm in
            if comm.rank == 0 { try RunConfig.save(config, runDirectory: options.outDir) }
            _ = try Trainer(options: options, communicator: comm).run()
        }
    }
}

/// The options every training command shares (`train`, `cv`).
struct TrainingOptionGroup: ParsableArguments {
    @Option(help: "Training manifest (JSONL: one {\"image\": path, \"label\": name} per line).") var train: String
    @Option(name: .customLong("out"), help: "Run directory (written by rank 0).") var out: String
    @Option(help: "Fixed class list (a classes.json) instead of the training labels' own.") var classes: String?
    @Option(help: "Manifest field holding the image reference (path, file:// or http(s):// URL).") var imageField = "image"
    @Option(help: "Manifest field holding the label.") var labelField = "label"
    @Option(help: "Map tiles as images: a URL template with {z}, {x}, {y} (e.g. 'http://HOST/{z}/{x}/{y}.png'); each record's tile comes from its lat/lon (the image field is then not read).") var tileUrl: String?
    @Option(help: "Zoom level of --tile-url tiles (0-30).") var tileZoom = 18
    @Option(help: "Manifest field whose records must stay together (cv folds).") var groupField: String?
    @Option(help: "Architecture (see `distrainer models`): \(Architectures.names.joined(separator: ", ")).") var model = "refcnn"
    @Option(help: "Hidden widths of an MLP classifier head, e.g. 512,128 (BatchNorm1d + ReLU + dropout each).") var head: String?
    @Option(help: "Dropout inside the classifier head.") var headDropout: Float?
    @Option(help: "Initial weights: a torchvision-style .safetensors state dict (matched by name; the classifier is re-initialised when the class count differs).") var pretrained: String?
    @Option(help: "Fine-tuning: none, backbone (everything before the global pooling), or a layer-name prefix such as layer3 (freezes every parameter up to and including that block).") var freeze = "none"
    @Option(help: "First epoch (counted from 1) in which frozen layers train too.") var unfreezeAtEpoch: Int?
    @Option(help: "Learning-rate multiplier of the backbone (e.g. 0.1).") var backboneLrMult: Float = 1
    @Flag(help: "Fuse the manifest's lat/lon (and source) with the image features (metadata MLP 64 → concat → 256 → classifier).") var fusion = false
    @Option(help: "Stage widths for cnn-small, e.g. 32,64,128.") var widths: String?
    @Flag(help: "Build the model without BatchNorm.") var noBatchnorm = false
    @Option(help: "Dropout before the classifier.") var dropout: Float = 0
    @Option(help: "Input channels: 1 (gray) or 3 (RGB).") var channels = 3
    @Option(help: "Images are resized to SIZE×SIZE.") var imageSize = 32
    @Option(help: "Normalisation mean per channel (x/255 − mean) / std; one value or one per channel.") var mean = "0.5"
    @Option(help: "Normalisation std per channel.") var std = "0.5"
    @Option(help: "Epochs.") var epochs = 10
    @Option(help: "Use at most N records of each manifest, spread evenly over it (quick runs).") var maxSamples: Int?
    @Option(help: "Run configuration: a YAML file of option names and values (command-line options override it; see README).") var config: String?
    @Option(help: "Preset applied before --config and the command line: fast-dev (2 epochs, 512 samples) or default.") var preset: String?
    @Option(help: "Stop after this many optimizer steps (the schedule still spans --epochs).") var maxSteps: Int?
    @Option(help: "GLOBAL batch size (split across ranks).") var batchSize = 128
    @Option(help: "Global batch size for validation.") var evalBatchSize = 256
    @OptionGroup(title: "Loss, optimizer and schedule") var recipe: RecipeOptionGroup
    @Option(help: "Seed for initialisation and data order.") var seed: UInt64 = 1
    @Option(help: "Virtual shards of the data order (default: the largest multiple of the rank count ≤ min(batch, 64)); the world size must divide it. A resumed run keeps its own.") var virtualShards: Int?
    @Option(help: "Also write last.ckpt every N optimizer steps (0: at the end of each epoch only).") var checkpointEvery = 0
    @Option(help: "Gradient allreduce bucket size in MB.") var bucketMb: Double = 4
    @Option(help: "Start each bucket's gradient allreduce during backward as soon as it is complete (on) or all after backward (off).") var overlapAllreduce: OnOff = .on
    @Option(help: "OpenBLAS and oneDNN threads per rank (default: $OPENBLAS_NUM_THREADS or 1).") var threads: Int?
    @Option(help: "Image decoding threads per rank.") var loaderThreads = 1
    @Option(help: "Convolution backend: onednn (blocked-layout oneDNN kernels, the faster) or openblas (im2col + sgemm, portable).") var convBackend = "onednn"
    @Option(help: "oneDNN convolution algorithm: direct, winograd (3×3 stride 1 only; ~1e-6 relative difference) or auto (Winograd where it is faster: 3×3 stride 1, ≥ 16 input channels, output ≥ 8×8).") var convAlgo = "auto"
    @Option(help: "How oneDNN keeps convolution weights during training: blocked (its own formats, no reorder per step) or oihw (PyTorch's order, reordered per call). Checkpoints and exports are OIHW either way.") var convWeights = "blocked"
    @Option(help: "Most batches prepared ahead: auto (up to 16) or a number; the depth adapts below it from the measured step and load times, within 256 MB.") var prefetch = "auto"
    @Option(help: "Per-rank memory cache of decoded images, e.g. 512MB, 2GB (0 disables it).") var cacheMem = "1GB"
    @Option(help: "Per-rank disk cache of fetched remote images, e.g. 50GB (0 disables it).") var cacheDisk = "0"
    @Option(help: "Disk cache folder on each host (each rank uses rank-R inside; default under the temp dir, never the run dir).") var cacheDir: String?
    @Option(help: "Cache eviction: lookahead (evict the image used farthest in the future, from the sampler's plan) or lru.") var cachePolicy = "lookahead"
    @Option(help: "Remote transfers in flight per rank.") var fetchConcurrency = 16
    @Option(help: "Per-host request rate limit (tile servers require one).") var maxRequestsPerSec: Double?
    @Option(help: "Largest image accepted from a URL, e.g. 8MB (default: sized so the disk cache holds two batches, 1–32 MB).") var maxImageBytes: String?
    @Flag(help: "Skip (and report) unreadable images and bad manifest lines instead of stopping.") var skipBadRecords = false
    @Option(help: "Skip samples whose image cannot be read (listed in failed_samples.jsonl) and stop only when more than this fraction of an epoch's samples fail (default with --skip-bad-records: 0.5).") var maxBadFraction: Double?
    @Flag(help: "Resume from RUN_DIR/last.ckpt at the exact step it was written (any world size dividing its virtual shards); cv skips complete folds.") var resume = false
    @Flag(help: "No progress line.") var quiet = false
    @OptionGroup(title: "Run control") var runControl: RunControlOptionGroup
    @OptionGroup(title: "Augmentation (training data only)") var augmentation: AugmentationOptionGroup

    func options(valManifest: String?) throws -> TrainOptions {
        var o = TrainOptions(trainManifest: train, valManifest: valManifest, outDir: out)
        o.classesFile = classes
        o.imageField = imageField
        o.labelField = labelField
        o.groupField = groupField
        do { o.tiles = try tileUrl.map { try MapTiles(template: $0, zoom: tileZoom) } } catch {
            throw ValidationError("--tile-url: \(error)")
        }
        o.model = model
        o.head = try head.map { try parseList($0, name: "head") }
        o.headDropout = headDropout
        o.pretrained = pretrained
        o.freeze = freeze
        if let u = unfreezeAtEpoch, u < 1 { throw ValidationError("--unfreeze-at-epoch counts epochs from 1, got \(u)") }
        o.unfreezeAtEpoch = unfreezeAtEpoch
        o.backboneLRMultiplier = backboneLrMult
        o.fusion = fusion
        o.widths = try widths.map { try parseList($0, name: "widths") }
        o.batchNorm = !noBatchnorm
        o.dropout = dropout
        o.channels = channels
        o.imageSize = imageSize
        o.mean = try parseList(mean, name: "mean")
        o.std = try parseList(std, name: "std")
        o.epochs = epochs
        o.maxSteps = maxSteps
        if let maxSamples, maxSamples < 1 { throw ValidationError("--max-samples must be at least 1, got \(maxSamples)") }
        o.maxSamples = maxSamples
        o.batchSize = batchSize
        o.evalBatchSize = evalBatchSize
        try recipe.apply(to: &o)
        o.seed = seed
        o.virtualShards = virtualShards
        o.checkpointEvery = checkpointEvery
        o.bucketElements = max(1024, Int(bucketMb * 1_048_576 / 4))
        o.overlapAllreduce = overlapAllreduce == .on
        o.threads = threads ?? defaultThreads()
        o.loaderThreads = loaderThreads
        o.convBackend = convBackend
        o.convAlgorithm = convAlgo
        o.convWeights = convWeights
        if prefetch != "auto" {
            guard let n = Int(prefetch), n >= 1 else { throw ValidationError("--prefetch must be auto or a positive number, got \"\(prefetch)\"") }
            o.prefetch = n
        }
        o.cacheMemoryBytes = try parseBytes(cacheMem, name: "cache-mem")
        o.cacheDiskBytes = try parseBytes(cacheDisk, name: "cache-disk")
        o.cacheDir = cacheDir
        if let cacheDir, isInside(cacheDir, out) {
            // Caches are per host; RUN_DIR is written by the coordinator only.
            throw ValidationError("--cache-dir \(cacheDir) is inside the run directory \(out); put the cache on each host's local disk (default: under the temp dir)")
        }
        guard let policy = ["lru": EvictionPolicy.lru, "lookahead": .lookAhead, "look-ahead": .lookAhead][cachePolicy] else {
            throw ValidationError("--cache-policy must be lookahead or lru")
        }
        o.cachePolicy = policy
        o.fetchConcurrency = fetchConcurrency
        o.maxRequestsPerSecond = maxRequestsPerSec
        o.maxImageBytes = try maxImageBytes.map { try parseBytes($0, name: "max-image-bytes") }
        o.skipBadRecords = skipBadRecords
        if let maxBadFraction {
            o.maxBadFraction = maxBadFraction
            o.skipFailedSamples = true
        }
        o.resume = resume
        o.progress = !quiet
        runControl.apply(to: &o)
        try augmentation.apply(to: &o)
        return o
    }
}
