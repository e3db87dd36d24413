import Testing
import CAllocCounter
@testable import Model

/// A training step on the oneDNN backend (blocked activations between layers) makes no system
/// allocation once warmed up: oneDNN's own, inside `dnnl_primitive_execute` (its C API builds a
/// std::unordered_map of the arguments per call), come from the thread's arena, the same number
/// every step, and nothing else allocates.
@Suite(.serialized) struct OneDNNAllocationTests {
    @Test(arguments: ["refcnn", "resnet18"]) func stepAllocatesNothingOutsideOneDNN(model: String) throws {
        #expect(distrainer_alloc_counter_active() != 0)
        let classes = 10, batch = 4
        let net = try Architectures.build(ModelSpec(architecture: model, channels: 3, imageSize: 16, classes: classes),
                                          backend: OneDNNBackend())
        net.initializeParameters(seed: 3)
        net.prepare(maxBatch: batch)
        let inputs = UnsafeMutablePointer<Float>.allocate(capacity: batch * net.inputShape.count)
        let labels = UnsafeMutablePointer<Int32>.allocate(capacity: batch)
        let dLogits = UnsafeMutablePointer<Float>.allocate(capacity: batch * classes)
        defer { inputs.deallocate(); labels.deallocate(); dLogits.deallocate() }
        for i in 0..<batch * net.inputShape.count { inputs[i] = Float(i % 5) / 5 - 0.4 }
        for i in 0..<batch { labels[i] = Int32(i % classes) }
        let sgd = SGD(momentum: 0.9, weightDecay: 1e-4)
        var losses: [Double] = []
        losses.reserveCapacity(8)
        func step() {
            net.store.zeroGradients()
            let logits = net.forward(inputs, batch: batch, mode: .train)
            losses.append(SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes,
                                                       gradScale: 1 / Float(batch), dLogits: dLogits).lossSum)
            net.backward(inputs, dLogits: dLogits, batch: batch, mode: .train)
            sgd.step(net.store, lr: 0.01)
        }
        for _ in 0..<2 { step() }
        var perStep: [(system: UInt64, arena: UInt64)] = []
        perStep.reserveCapacity(3)
        for _ in 0..<3 {
            distrainer_alloc_counter_start(1)
            step()
            distrainer_alloc_counter_stop()
            perStep.append((distrainer_alloc_counter_allocations(), distrainer_alloc_counter_arena_allocations()))
        }
        for (i, c) in perStep.enumerated() {
            #expect(c.system == 0, "\(model) step \(i): \(c.system) system allocations")
            #expect(c.arena == perStep[0].arena, "\(model): oneDNN's allocations per step vary \(perStep.map(\.arena))")
        }
        // oneDNN 2.6 allocates in every execute: the primitives ran and their calls are marked.
        #expect(perStep[0].arena > 0)
        #expect(losses.allSatisfy { $0.isFinite })
    }
}
