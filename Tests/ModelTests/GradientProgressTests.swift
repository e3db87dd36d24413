import Testing
import Foundation
@testable import Model

/// The backward watermark that drives the overlapped allreduce: each report must only claim
/// gradients that backward has really finished.
@Suite struct GradientProgressTests {
    /// Snapshots the gradient buffer at every report.
    final class Recorder: GradientProgressObserver {
        let store: ParameterStore
        var offsets: [Int] = []
        var snapshots: [[Float]] = []
        var reports = 0
        init(store: ParameterStore) { self.store = store }
        func backwardProgress(finalFrom offset: Int?) {
            reports += 1
            guard let offset else { return }
            offsets.append(offset)
            snapshots.append(Array(UnsafeBufferPointer(start: store.gradients, count: store.count)))
        }
    }

    /// After every report, gradients at offsets ≥ the reported one already hold their final
    /// values; the watermark only moves down and reaches 0; nested Sequentials report too.
    @Test(arguments: [("refcnn", 16), ("resnet18", 16), ("mobilenetv2", 32)])
    func watermarkOnlyClaimsFinishedGradients(model: String, size: Int) throws {
        let net = try Architectures.build(ModelSpec(architecture: model, channels: 3, imageSize: size, classes: 10))
        net.initializeParameters(seed: 3)
        let batch = 2
        net.prepare(maxBatch: batch)
        let recorder = Recorder(store: net.store)
        net.gradientObserver = recorder
        var input = [Float](repeating: 0, count: batch * net.inputShape.count)
        var rng = SystemRandomNumberGenerator()
        for i in input.indices { input[i] = Float.random(in: -1...1, using: &rng) }
        var dLogits = [Float](repeating: 0, count: batch * 10)
        for i in dLogits.indices { dLogits[i] = Float.random(in: -1...1, using: &rng) }
        net.store.zeroGradients()
        input.withUnsafeBufferPointer { x in
            _ = net.forward(x.baseAddress!, batch: batch, mode: .train)
            dLogits.withUnsafeBufferPointer { net.backward(x.baseAddress!, dLogits: $0.baseAddress!, batch: batch, mode: .train) }
        }
        let final = Array(UnsafeBufferPointer(start: net.store.gradients, count: net.store.count))
        #expect(recorder.offsets.last == 0)
        #expect(zip(recorder.offsets, recorder.offsets.dropFirst()).allSatisfy { $0 >= $1 })
        for (offset, snapshot) in zip(recorder.offsets, recorder.snapshots) {
            #expect(snapshot[offset...] == final[offset...], "gradients from \(offset) were not final yet")
        }
        // Finer than one report per top-level layer where those are Sequentials (mobilenetv2's blocks).
        if model == "mobilenetv2" { #expect(Set(recorder.offsets).count > net.layers.filter { !$0.layer.parameterSpecs.isEmpty }.count) }
        #expect(recorder.reports >= net.layers.count)
        // Detached: nobody is told.
        net.gradientObserver = nil
        let before = recorder.reports
        input.withUnsafeBufferPointer { x in
            dLogits.withUnsafeBufferPointer { net.backward(x.baseAddress!, dLogits: $0.baseAddress!, batch: batch, mode: .train) }
        }
        #expect(recorder.reports == before)
    }
}

@Suite struct ComputeThreadsTests {
    @Test func warnsOnlyWhenRanksTimesThreadsExceedTheCores() {
        #expect(ComputeThreads.oversubscriptionWarning(threads: 1, localRanks: 2, cores: 2) == nil)
        #expect(ComputeThreads.oversubscriptionWarning(threads: 2, localRanks: 1, cores: 2) == nil)
        let w = ComputeThreads.oversubscriptionWarning(threads: 2, localRanks: 2, cores: 2)
        #expect(w?.contains("4 > 2 cores") == true, "\(w ?? "nil")")
        #expect(w?.contains("--threads 1") == true)
    }

    @Test func localRanksComeFromTheLauncher() {
        #expect(ComputeThreads.localRanks(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "3"]) == 3)
        #expect(ComputeThreads.localRanks(environment: ["SLURM_NTASKS_PER_NODE": "4(x2)"]) == 4)
        #expect(ComputeThreads.localRanks(environment: [:]) == 1)
    }
}
