import ArgumentParser
import Foundation
import Training

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time training steps on synthetic in-memory data; prints one JSON line.",
        discussion: """
        One step = forward + backward + gradient allreduce + SGD. --batch-size is PER RANK (like
        PyTorch DDP); under mpirun the JSON has per-rank and aggregate images/s. Figures are the
        median of --windows timed windows after --warmup steps.
        """)

    @Option(help: "Architecture.") var model = "refcnn"
    @Option(help: "Input size.") var imageSize = 32
    @Option(help: "Input channels.") var channels = 3
    @Option(help: "Classes.") var classes = 10
    @Option(help: "Batch size PER RANK.") var batchSize = 64
    @Option(help: "Steps per timed window (0: about 3 s).") var steps = 0
    @Option(help: "Timed windows.") var windows = 7
    @Option(help: "Warm-up steps.") var warmup = 5
    @Option(help: "OpenBLAS and oneDNN threads per rank (default: $OPENBLAS_NUM_THREADS or 1).") var threads: Int?
    @Option(help: "Convolution backend: onednn or openblas.") var convBackend = "onednn"
    @Option(help: "oneDNN convolution algorithm: direct, winograd (3×3 stride 1 only) or auto (Winograd where it is faster: 3×3 stride 1, ≥ 16 input channels, output ≥ 8×8).") var convAlgo = "auto"
    @Option(help: "How oneDNN keeps convolution weights: blocked or oihw (as train's --conv-weights).") var convWeights = "blocked"
    @Option(help: "Gradient allreduce: overlapped with backward (on), after it (off), or both in alternating windows (reports the fraction hidden).") var overlapAllreduce = "both"
    @Option(help: "Poll MPI (MPI_Testall) between layers so pending bucket allreduces progress: on|off.") var mpiProgress: OnOff = .on
    @Option(help: "Gradient allreduce bucket size in MB.") var bucketMb: Double = 4
    @Option(help: "Also append the JSON line to this file.") var json: String?

    func run() throws {
        guard let mode = OverlapMode(rawValue: overlapAllreduce) else {
            throw ValidationError("--overlap-allreduce: '\(overlapAllreduce)' is not on, off or both")
        }
        try MPISession.run { comm in
            var o = BenchOptions()
            o.model = model; o.imageSize = imageSize; o.channels = channels; o.classes = classes
            o.batchSize = batchSize; o.steps = steps; o.windows = windows; o.warmup = warmup
            o.threads = threads ?? defaultThreads()
            o.convBackend = convBackend; o.convAlgorithm = convAlgo; o.convWeights = convWeights
            o.overlap = mode
            o.pollProgress = mpiProgress == .on
            o.bucketElements = max(1024, Int(bucketMb * 1_048_576 / 4))
            let result = try Benchmark.run(o, comm: comm)
            if comm.rank == 0 {
                let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
                let line = String(decoding: data, as: UTF8.self)
                print(line)
                if let json {
                    if !FileManager.default.fileExists(atPath: json) { _ = FileManager.default.createFile(atPath: json, contents: nil) }
                    if let h = FileHandle(forWritingAtPath: json) { h.seekToEndOfFile(); h.write(Data((line + "\n").utf8)); try? h.close() }
                }
            }
        }
    }
}
