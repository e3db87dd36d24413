import Foundation
import Dist
import Model
import Shards
import CAllocCounter

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
    /// Convolution backend, oneDNN algorithm and weight format (as `train`'s `--conv-backend`, `--conv-algo`, `--conv-weights`).
    public var convBackend = "onednn"
    public var convAlgorithm = "auto"
    public var convWeights = "blocked"
    /// Steps with the overlapped allreduce, the blocking one, or both in alternating windows.
    public var overlap: OverlapMode = .both
    /// MPI_Testall on the pending buckets between layers (progress without a progress thread).
    public var pollProgress = true
    public init() {}
}

public enum OverlapMode: String, Sendable, CaseIterable {
    case on, off, both
}

/// Times full training steps (forward, backward, gradient allreduce, SGD) on synthetic
/// in-memory data, so the figure is compute and communication only, with no I/O.
public enum Benchmark {
    public static func run(_ o: BenchOptions, comm: Communicator) throws -> [String: Any] {
        ComputeThreads.configure(o.threads)
        if comm.rank == 0, let warning = ComputeThreads.oversubscriptionWarning(threads: o.threads) {
            FileHandle.standardError.write(Data("distrainer: \(warning)\n".utf8))
        }
        let spec = ModelSpec(architecture: o.model, channels: o.channels, imageSize: o.imageSize, classes: o.classes)
        let net = try Architectures.build(spec, backend: o.convBackend, algorithm: o.convAlgorithm, weights: o.convWeights,
                                          agreeingOn: comm) { FileHandle.standardError.write(Data("distrainer: warning: \($0)\n".utf8)) }
        net.initializeParameters(seed: 1)
        net.prepare(maxBatch: o.batchSize)
        let source = SyntheticSampleSource(sampleCount: net.inputShape.count, classes: o.classes)
        let inputs = UnsafeMutablePointer<Float>.allocate(capacity: o.batchSize * source.sampleCount)
        let labels = UnsafeMutablePointer<Int32>.allocate(capacity: o.batchSize)
        let dLogits = UnsafeMutablePointer<Float>.allocate(capacity: o.batchSize * o.classes)
        defer { inputs.deallocate(); labels.deallocate(); dLogits.deallocate() }
        for i in 0..<o.batchSize { labels[i] = try source.load(comm.rank * o.batchSize + i, into: inputs + i * source.sampleCount) }
        let reducer = BucketedAllreduce(count: net.store.count, bucketElements: o.bucketElements, communicator: comm)
        reducer.pollsProgress = o.pollProgress
        let overlap = OverlappedReduction(reducer: reducer, network: net)
        let sgd = SGD(momentum: 0.9)
        let globalBatch = o.batchSize * comm.size
        // Per window: allreduce time on the step's path (blocking: the whole call; overlapped:
        // the wait after backward) and, overlapped, from the first bucket's start to completion.
        var waitNanos: UInt64 = 0, spanNanos: UInt64 = 0, allreduceAllocations: UInt64 = 0

        func step(overlapped: Bool) throws {
            net.store.zeroGradients()
            let logits = net.forward(inputs, batch: o.batchSize, mode: .train)
            _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: o.batchSize, classes: o.classes,
                                             gradScale: 1 / Float(globalBatch), dLogits: dLogits)
            if overlapped { overlap.arm() }
            net.backward(inputs, dLogits: dLogits, batch: o.batchSize, mode: .train)
            if overlapped {
                try overlap.finish()
                waitNanos += reducer.lastWaitNanos; spanNanos += reducer.lastSpanNanos
            } else {
                let before = distrainer_alloc_counter_allocations()
                let t = DispatchTime.now().uptimeNanoseconds
                try reducer.reduce(net.store.gradients)
                let dt = DispatchTime.now().uptimeNanoseconds - t
                waitNanos += dt; spanNanos += dt
                allreduceAllocations += distrainer_alloc_counter_allocations() - before
            }
            sgd.step(net.store, lr: 0.05)
        }

        let modes: [Bool] = switch o.overlap { case .on: [true]; case .off: [false]; case .both: [true, false] }
        for _ in 0..<o.warmup { for m in modes { try step(overlapped: m) } }
        var steps = o.steps
        if steps == 0 {
            let t = Date(); try step(overlapped: modes[0]); try step(overlapped: modes[0])
            let per = try comm.allreduce([Date().timeIntervalSince(t) / 2], op: .max)[0]
            steps = max(1, Int(3.0 / max(per, 1e-6)))
        }
        // Allocations per step after warm-up, per mode (whole process): from the system allocator
        // (must be 0), and transient ones inside oneDNN's and MPI's calls served from the
        // per-thread arena (CAllocCounter) reserved on the first step; the blocking mode also says
        // how many were made inside the MPI allreduce calls.
        var allocationsPerStep: [String: Double] = [:]
        let countedSteps = min(steps, 10)
        for m in modes {
            try comm.barrier()
            allreduceAllocations = 0
            let c = try AllocationCounter.count { for _ in 0..<countedSteps { try step(overlapped: m) } }
            let mode = m ? "overlap_on" : "overlap_off"
            allocationsPerStep[mode] = Double(c.allocations) / Double(countedSteps)
            allocationsPerStep[mode + "_arena"] = Double(c.arenaAllocations) / Double(countedSteps)
            if !m { allocationsPerStep["overlap_off_inside_mpi_allreduce"] = Double(allreduceAllocations) / Double(countedSteps) }
        }
        struct Window { var rank: Double; var aggregate: Double; var wait: Double; var span: Double }
        var windows: [Bool: [Window]] = [:]
        for w in 0..<(o.windows * modes.count) {
            let m = modes[w % modes.count]
            try comm.barrier()
            waitNanos = 0; spanNanos = 0
            let t = Date()
            for _ in 0..<steps { try step(overlapped: m) }
            let dt = Date().timeIntervalSince(t)
            let slowest = try comm.allreduce([dt], op: .max)[0]
            windows[m, default: []].append(Window(rank: Double(o.batchSize * steps) / dt, aggregate: Double(globalBatch * steps) / slowest,
                                                  wait: Double(waitNanos) / 1e9 / Double(steps), span: Double(spanNanos) / 1e9 / Double(steps)))
        }
        let first = windows[modes[0]]!
        let rankRates = first.map(\.rank), aggregate = first.map(\.aggregate)
        let allreduceFractions = first.map { $0.wait * $0.rank / Double(o.batchSize) }   // wait per step / step time
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
            "conv_backend": o.convBackend, "conv_algo": o.convAlgorithm, "conv_weights": o.convWeights,
            "overlap_allreduce": o.overlap.rawValue, "mpi_progress_polling": o.pollProgress,
            "bucket_elements": o.bucketElements, "buckets": reducer.buckets.count,
            "allocations_per_step": allocationsPerStep, "allocation_counter_active": AllocationCounter.isActive,
        ]
        // Per mode: aggregate images/s and the allreduce seconds per step on the critical path
        // ("wait") and in flight ("span"), medians over windows and then over ranks.
        var perMode: [String: Any] = [:]
        for m in modes {   // the same order on every rank (gather is collective)
            let ws = windows[m] ?? []
            let stats = try comm.gather([median(ws.map(\.wait)), median(ws.map(\.span))], root: 0)
            perMode[m ? "on" : "off"] = [
                "images_per_sec": median(ws.map(\.aggregate)),
                "allreduce_wait_ms_per_step": stats.map { 1000 * median($0.map { $0[0] }) } ?? 0,
                "allreduce_span_ms_per_step": stats.map { 1000 * median($0.map { $0[1] }) } ?? 0,
            ] as [String: Any]
        }
        result["modes"] = perMode
        // Fraction of the allreduce hidden behind backward: 1 − (wait overlapped) / (blocking
        // allreduce time), both measured in this launch.
        if let on = perMode["on"] as? [String: Any], let off = perMode["off"] as? [String: Any],
           let w = on["allreduce_wait_ms_per_step"] as? Double, let b = off["allreduce_wait_ms_per_step"] as? Double, b > 0 {
            result["allreduce_hidden_fraction"] = 1 - w / b
        }
        if let medians {
            result["per_rank_images_per_sec"] = medians.map { $0[0] }
            result["peak_rss_mb"] = medians.map { ($0[1] * 10).rounded() / 10 }
            result["allreduce_fraction"] = medians.map { ($0[2] * 1000).rounded() / 1000 }
        }
        return result
    }
}
