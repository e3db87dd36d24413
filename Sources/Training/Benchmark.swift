import Foundation
import Dist
import Model
import Shards

/// Options of `distrainer bench`.
public struct BenchOptions: Sendable {
    public var model = "refcnn"
    public var channels = 3
    public var imageSize = 32
    public var classes = 10
    /// Samples per rank per step (like PyTorch DDP's per-process batch).
    public var batchSize = 64
    /// Steps per timed window (0: about 3 seconds' worth).
    public var steps = 0
    public var windows = 7
    public var warmup = 5
    public var threads = 1
    public var bucketElements = 1 << 20
    /// Convolution backend and oneDNN algorithm (as `train`'s `--conv-backend`, `--conv-algo`).
    public var convBackend = "onednn"
    public var convAlgorithm = "direct"
    public init() {}
}

/// Times full training steps (forward, backward, gradient allreduce, SGD) on synthetic
/// in-memory data, so the figure is compute and communication only, with no I/O.
public enum Benchmark {
    public static func run(_ o: BenchOptions, comm: Communicator) throws -> [String: Any] {
        BLAS.setThreads(o.threads)
        let spec = ModelSpec(architecture: o.model, channels: o.channels, imageSize: o.imageSize, classes: o.classes)
        let net = try Architectures.build(spec, backend: try ConvolutionBackends.named(o.convBackend, algorithm: o.convAlgorithm))
        net.initializeParameters(seed: 1)
        net.prepare(maxBatch: o.batchSize)
        let source = SyntheticSampleSource(sampleCount: net.inputShape.count, classes: o.classes)
        let inputs = UnsafeMutablePointer<Float>.allocate(capacity: o.batchSize * source.sampleCount)
        let labels = UnsafeMutablePointer<Int32>.allocate(capacity: o.batchSize)
        let dLogits = UnsafeMutablePointer<Float>.allocate(capacity: o.batchSize * o.classes)
        defer { inputs.deallocate(); labels.deallocate(); dLogits.deallocate() }
        for i in 0..<o.batchSize { labels[i] = try source.load(comm.rank * o.batchSize + i, into: inputs + i * source.sampleCount) }
        let reducer = BucketedAllreduce(count: net.store.count, bucketElements: o.bucketElements, communicator: comm)
        let sgd = SGD(momentum: 0.9)
        let globalBatch = o.batchSize * comm.size
        var allreduceSeconds = 0.0

        func step() throws {
            net.store.zeroGradients()
            let logits = net.forward(inputs, batch: o.batchSize, mode: .train)
            _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: o.batchSize, classes: o.classes,
                                             gradScale: 1 / Float(globalBatch), dLogits: dLogits)
            net.backward(inputs, dLogits: dLogits, batch: o.batchSize, mode: .train)
            let t = DispatchTime.now().uptimeNanoseconds
            try reducer.reduce(net.store.gradients)
            allreduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
            sgd.step(net.store, lr: 0.05)
        }

        for _ in 0..<o.warmup { try step() }
        var steps = o.steps
        if steps == 0 {
            let t = Date(); try step(); try step()
            let per = try comm.allreduce([Date().timeIntervalSince(t) / 2], op: .max)[0]
            steps = max(1, Int(3.0 / max(per, 1e-6)))
        }
        var rankRates: [Double] = [], aggregate: [Double] = [], allreduceFractions: [Double] = []
        for _ in 0..<o.windows {
            try comm.barrier()
            allreduceSeconds = 0
            let t = Date()
            for _ in 0..<steps { try step() }
            let dt = Date().timeIntervalSince(t)
            rankRates.append(Double(o.batchSize * steps) / dt)
            let slowest = try comm.allreduce([dt], op: .max)[0]
            aggregate.append(Double(globalBatch * steps) / slowest)
            allreduceFractions.append(allreduceSeconds / dt)
        }
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let peakMB = Double(usage.ru_maxrss) / 1024
        let medians = try comm.gather([median(rankRates), peakMB, median(allreduceFractions)], root: 0)
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2 }
        var result: [String: Any] = [
            "model": o.model, "input": [o.channels, o.imageSize, o.imageSize], "batch_per_rank": o.batchSize,
            "ranks": comm.size, "threads": o.threads, "params": net.parameterCount,
            "fwd_flops_per_img": 2 * net.macsPerSample, "steps_per_window": steps, "windows": o.windows,
            "images_per_sec": median(aggregate), "images_per_sec_min": aggregate.min() ?? 0,
            "images_per_sec_max": aggregate.max() ?? 0,
            "implied_train_gflops": 3 * Double(2 * net.macsPerSample) * median(aggregate) / 1e9,
            "conv_backend": o.convBackend, "conv_algo": o.convAlgorithm,
        ]
        if let medians {
            result["per_rank_images_per_sec"] = medians.map { $0[0] }
            result["peak_rss_mb"] = medians.map { ($0[1] * 10).rounded() / 10 }
            result["allreduce_fraction"] = medians.map { ($0[2] * 1000).rounded() / 1000 }
        }
        return result
    }
}
