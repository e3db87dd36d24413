import ArgumentParser
import Foundation
import Training

struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Evaluate a checkpoint on a labelled JSONL manifest (data-parallel under mpirun).",
        discussion: """
        Needs only the checkpoint (its header names the architecture, classes and input
        normalisation). Each rank evaluates a contiguous shard; counts are summed, so every image
        is counted once. Rank 0 writes OUT: metrics.json (accuracy, macro/weighted F1, balanced
        accuracy, top1/3/5, ECE over 15 bins, per-class precision/recall/F1/support, confusion
        matrix with rows = true class), classification_report.txt, confusion_matrix.png,
        confusion_matrix_normalized.png and errors.jsonl (misclassified images).
        """)

    @Option(help: "Checkpoint file (e.g. RUN/best.ckpt).") var checkpoint: String
    @Option(help: "Labelled manifest (JSONL) to evaluate on.") var data: String
    @Option(help: "Output folder (written by rank 0).") var out: String
    @Option(help: "Test-time augmentation: none, or flip (average the probabilities of the image and its mirror).") var tta = "none"
    @Option(help: "GLOBAL batch size (split across ranks).") var batchSize = 256
    @Option(help: "Manifest field holding the image reference.") var imageField = "image"
    @Option(help: "Manifest field holding the label.") var labelField = "label"
    @Option(help: "OpenBLAS and oneDNN threads per rank (default: $OPENBLAS_NUM_THREADS or 1).") var threads: Int?
    @Option(help: "Convolution backend: onednn (the faster) or openblas (portable).") var convBackend = "onednn"
    @Option(help: "Image decoding threads per rank.") var loaderThreads = 1
    @Flag(help: "Skip (count and list in failed_samples.jsonl) bad manifest lines and unreadable images.") var skipBadRecords = false

    func run() throws {
        guard ["none", "flip"].contains(tta) else { throw ValidationError("--tta must be none or flip, not '\(tta)'") }
        var o = EvaluateOptions(checkpoint: checkpoint, data: data, outDir: out)
        o.tta = tta == "flip"
        o.batchSize = batchSize
        o.imageField = imageField
        o.labelField = labelField
        o.threads = threads ?? defaultThreads()
        o.convBackend = convBackend
        o.loaderThreads = loaderThreads
        o.skipBadRecords = skipBadRecords
        try MPISession.run { comm in
            _ = try CheckpointEvaluation.evaluate(o, comm: comm, log: { if comm.rank == 0 { print($0) } })
        }
    }
}

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Print the top-k classes of images as JSON lines.",
        discussion: """
        distrainer predict --checkpoint C IMAGE…   or   distrainer predict --checkpoint C --data M.jsonl
        One line per image, in input order: {"image": …, "top": [{"class": …, "probability": …}, …]}
        (with "label" when the manifest has one). Works under mpirun (rank 0 prints).
        """)

    @Option(help: "Checkpoint file.") var checkpoint: String
    @Option(help: "Manifest (JSONL) of images; labels optional.") var data: String?
    @Option(help: "Classes to print per image.") var topK = 5
    @Option(help: "Test-time augmentation: none, or flip.") var tta = "none"
    @Option(help: "GLOBAL batch size.") var batchSize = 64
    @Option(help: "Manifest field holding the image reference.") var imageField = "image"
    @Option(help: "Manifest field holding the label.") var labelField = "label"
    @Option(help: "OpenBLAS and oneDNN threads per rank.") var threads: Int?
    @Option(help: "Convolution backend: onednn (the faster) or openblas (portable).") var convBackend = "onednn"
    @Flag(help: "Print {\"image\", \"error\"} for unreadable images instead of stopping.") var skipBadRecords = false
    @Argument(help: "Image paths or URLs.") var images: [String] = []

    func run() throws {
        guard ["none", "flip"].contains(tta) else { throw ValidationError("--tta must be none or flip, not '\(tta)'") }
        var o = PredictOptions(checkpoint: checkpoint)
        o.images = images
        o.data = data
        o.topK = topK
        o.tta = tta == "flip"
        o.batchSize = batchSize
        o.imageField = imageField
        o.labelField = labelField
        o.threads = threads ?? defaultThreads()
        o.convBackend = convBackend
        o.skipBadRecords = skipBadRecords
        try MPISession.run { comm in
            try CheckpointEvaluation.predict(o, comm: comm) { print($0) }
        }
    }
}
