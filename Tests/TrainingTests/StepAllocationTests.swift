import Testing
import Foundation
import Dist
import Model
@testable import Training

/// The training step (forward, loss, backward, bucketed allreduce blocking or overlapped, SGD)
/// allocates nothing once warmed up, counted by the interposed allocator on the calling thread
/// (the other tests run in parallel in this process; with 1 BLAS thread the step runs on it).
@Suite(.serialized) struct StepAllocationTests {
    @Test func counterSeesAllocations() throws {
        #expect(AllocationCounter.isActive)
        var kept: [[Int]] = []
        let c = AllocationCounter.count(thisThreadOnly: true) {
            for i in 0..<10 { kept.append([Int](repeating: i, count: 100 + i)) }   // 10 heap buffers
        }
        #expect(kept.count == 10)
        #expect(c.allocations >= 10 && c.bytes >= 10 * 800)
        let none = AllocationCounter.count(thisThreadOnly: true) { _ = 1 + 1 }
        #expect(none.allocations == 0)
    }

    @Test(arguments: ["refcnn", "resnet18"]) func stepAllocatesNothingAfterWarmUp(model: String) throws {
        let classes = 10, batch = 4
        let net = try Architectures.build(ModelSpec(architecture: model, channels: 3, imageSize: 16, classes: classes))
        net.initializeParameters(seed: 2)
        net.prepare(maxBatch: batch)
        let inputs = UnsafeMutablePointer<Float>.allocate(capacity: batch * net.inputShape.count)
        let labels = UnsafeMutablePointer<Int32>.allocate(capacity: batch)
        let dLogits = UnsafeMutablePointer<Float>.allocate(capacity: batch * classes)
        defer { inputs.deallocate(); labels.deallocate(); dLogits.deallocate() }
        for i in 0..<batch * net.inputShape.count { inputs[i] = Float(i % 7) / 7 - 0.5 }
        for i in 0..<batch { labels[i] = Int32(i % classes) }
        // Small buckets: several start inside backward.
        let reducer = BucketedAllreduce(count: net.store.count, bucketElements: 4096, communicator: LocalCommunicator())
        let overlap = OverlappedReduction(reducer: reducer, network: net)
        let sgd = SGD(momentum: 0.9, weightDecay: 1e-4)
        func step(overlapped: Bool) throws {
            net.store.zeroGradients()
            let logits = net.forward(inputs, batch: batch, mode: .train)
            _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes,
                                             gradScale: 1 / Float(batch), dLogits: dLogits)
            if overlapped { overlap.arm() }
            net.backward(inputs, dLogits: dLogits, batch: batch, mode: .train)
            if overlapped { try overlap.finish() } else { try reducer.reduce(net.store.gradients) }
            sgd.step(net.store, lr: 0.01)
        }
        for overlapped in [false, true] {
            for _ in 0..<2 { try step(overlapped: overlapped) }
            let c = try AllocationCounter.count(thisThreadOnly: true) { for _ in 0..<3 { try step(overlapped: overlapped) } }
            #expect(c.allocations == 0, "\(model) overlapped=\(overlapped): \(c.allocations) allocations (\(c.bytes) bytes) in 3 steps")
        }
        // The overlapped path really started its buckets inside backward (the first layer reports
        // offset 0 before `finish`).
        #expect(reducer.buckets.count > 2)
        #expect(reducer.lastEarlyBuckets == reducer.buckets.count)
        #expect(reducer.callCount == 10)
    }
}
