import Testing
@testable import Model
import Support

/// Freezing and per-tensor learning rates (`Network.applyFineTuning`, `TensorSlot.lrScale`).
@Suite struct FineTuningTests {
    /// A tiny resnet18 (torchvision structure, stage widths 4, 4, 8, 8).
    func tinyResNet(seed: UInt64 = 3) throws -> Network {
        let net = try Architectures.build(ModelSpec(architecture: "resnet18", channels: 3, imageSize: 20, classes: 3,
                                                    widths: [4, 4, 8, 8]))
        net.initializeParameters(seed: seed)
        return net
    }

    /// Runs `steps` SGD steps on random data.
    func train(_ net: Network, steps: Int, lr: Float = 0.1, momentum: Float = 0.9, batch: Int = 4) {
        net.prepare(maxBatch: batch)
        var rng = RandomSource(seed: 11)
        let classes = net.outputShape.count
        var d = [Float](repeating: 0, count: batch * classes)
        let sgd = SGD(momentum: momentum, weightDecay: 1e-3)
        for _ in 0..<steps {
            let x = (0..<batch * net.inputShape.count).map { _ in rng.nextGaussian() }
            let labels = (0..<batch).map { _ in Int32(rng.nextInt(below: classes)) }
            net.store.zeroGradients()
            let logits = net.forward(x, batch: batch, mode: .train)
            _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes,
                                             gradScale: 1 / Float(batch), dLogits: &d)
            net.backward(x, dLogits: d, batch: batch, mode: .train)
            sgd.step(net.store, lr: lr)
        }
    }

    func values(_ net: Network, _ slot: TensorSlot, state: Bool = false) -> [Float] {
        Array((state ? net.store.stateBuffer : net.store.parameterBuffer)[slot.range])
    }

    @Test func freezeUntilLayerKeepsThePrefixBitwiseAndItsRunningStatistics() throws {
        let net = try tinyResNet()
        try net.applyFineTuning(freeze: .until("layer2"))
        let frozenCount = net.store.slots.lastIndex { $0.name.hasPrefix("layer2.") }! + 1
        #expect(net.store.slots[..<frozenCount].allSatisfy { $0.lrScale == 0 })
        #expect(net.store.slots[frozenCount...].allSatisfy { $0.lrScale == 1 })
        #expect(net.store.slots[frozenCount].name.hasPrefix("layer3.0."))
        // Backward stops at the first layer3 block: nothing below it is even visited.
        #expect(net.layers[net.firstTrainableLayer].name == "layer3.0")
        let before = Array(net.store.parameterBuffer), stateBefore = Array(net.store.stateBuffer)
        train(net, steps: 3)
        for (i, slot) in net.store.slots.enumerated() {
            let now = values(net, slot), then = Array(before[slot.range])
            if i < frozenCount {
                #expect(now == then, "\(slot.name) changed while frozen")
                #expect(net.store.gradientBuffer[slot.range].allSatisfy { $0 == 0 }, "\(slot.name) got a gradient")
            } else {
                #expect(now != then, "\(slot.name) did not train")
            }
        }
        for slot in net.store.stateSlots {
            let unchanged = values(net, slot, state: true) == Array(stateBefore[slot.range])
            let frozenBlock = ["bn1.", "layer1.", "layer2."].contains { slot.name.hasPrefix($0) }
            #expect(unchanged == frozenBlock, "\(slot.name): running statistics \(unchanged ? "unchanged" : "changed")")
        }
    }

    @Test func freezeBackboneTrainsOnlyTheHead() throws {
        let net = try Architectures.build(ModelSpec(architecture: "resnet18", channels: 3, imageSize: 20, classes: 3,
                                                    widths: [4, 4, 8, 8], head: [5]))
        net.initializeParameters(seed: 2)
        try net.applyFineTuning(freeze: .backbone)
        let trainable = net.store.slots.filter { $0.lrScale != 0 }.map(\.name)
        #expect(trainable == ["fc.0.weight", "fc.0.bias", "fc.1.weight", "fc.1.bias", "fc.4.weight", "fc.4.bias"])
        #expect(net.layers[net.firstTrainableLayer].name == "fc.0")
        let before = Array(net.store.parameterBuffer), stateBefore = Array(net.store.stateBuffer)
        train(net, steps: 2)
        let backbone = net.store.slots[net.backboneTensorCount - 1].range.upperBound
        #expect(Array(net.store.parameterBuffer[..<backbone]) == Array(before[..<backbone]))
        #expect(Array(net.store.parameterBuffer[backbone...]) != Array(before[backbone...]))
        // Only the head's BatchNorm1d (fc.1) updates its running statistics.
        let headState = net.store.stateSlots.first { $0.name == "fc.1.running_mean" }!.range.lowerBound
        #expect(Array(net.store.stateBuffer[..<headState]) == Array(stateBefore[..<headState]))
        #expect(Array(net.store.stateBuffer[headState...]) != Array(stateBefore[headState...]))
    }

    @Test func unfreezingRestoresTraining() throws {
        let net = try tinyResNet()
        try net.applyFineTuning(freeze: .backbone)
        let before = Array(net.store.parameterBuffer), stateBefore = Array(net.store.stateBuffer)
        train(net, steps: 1)
        let conv1 = net.store.slots[0].range
        #expect(Array(net.store.parameterBuffer[conv1]) == Array(before[conv1]))
        try net.applyFineTuning(freeze: .none)
        #expect(net.firstTrainableLayer == 0)
        #expect(net.store.slots.allSatisfy { $0.lrScale == 1 })
        train(net, steps: 1)
        #expect(Array(net.store.parameterBuffer[conv1]) != Array(before[conv1]))
        #expect(Array(net.store.stateBuffer[net.store.stateSlots[0].range]) != Array(stateBefore[net.store.stateSlots[0].range]))
    }

    /// The trainable part's gradients still match finite differences when a prefix is frozen
    /// (its BatchNorms in eval mode, backward stopping at layer3).
    @Test func gradientsOfTheTrainablePartPassTheFiniteDifferenceCheck() throws {
        let net = try tinyResNet(seed: 4)
        try net.applyFineTuning(freeze: .until("layer2"))
        NetworkGradientTests().checkNetwork(net, batch: 4)
    }

    /// A frozen BatchNorm in a training forward behaves like eval mode: its dx matches finite
    /// differences of the eval-mode function, and it produces no γ/β gradient.
    @Test func frozenBatchNormIsAnEvalModeLayer() throws {
        let bn = BatchNorm2d()
        bn.frozen = true
        let reports = try GradientCheck(layer: bn, input: FeatureShape(channels: 3, height: 2, width: 2), batch: 4, eps: 3e-3).run()
        let dx = reports.filter { $0.name.hasSuffix(".dx") }
        #expect(dx.count == 1)
        for r in dx { #expect(r.relativeError < 1e-2, "\(r)") }
    }

    @Test func backboneLearningRateMultiplierMatchesAManualUpdate() throws {
        let net = try tinyResNet()
        try net.applyFineTuning(freeze: .none, backboneLRMultiplier: 0.1)
        let backbone = net.backboneTensorCount
        #expect(net.store.slots[backbone].name == "fc.weight")
        #expect(net.store.slots[..<backbone].allSatisfy { $0.lrScale == 0.1 })
        net.prepare(maxBatch: 4)
        var rng = RandomSource(seed: 9)
        let x = (0..<4 * net.inputShape.count).map { _ in rng.nextGaussian() }
        var d = [Float](repeating: 0, count: 4 * 3)
        let logits = net.forward(x, batch: 4, mode: .train)
        _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: [0, 1, 2, 1], batch: 4, classes: 3, gradScale: 0.25, dLogits: &d)
        net.store.zeroGradients()
        net.backward(x, dLogits: d, batch: 4, mode: .train)
        let w0 = Array(net.store.parameterBuffer), g = Array(net.store.gradientBuffer)
        let lr: Float = 0.5, wd: Float = 1e-3
        SGD(momentum: 0.9, weightDecay: wd).step(net.store, lr: lr)
        // First step: v = g + wd·w, w ← w − lr·scale·v.
        for (i, slot) in net.store.slots.enumerated() {
            let scale: Float = i < backbone ? 0.1 : 1
            for j in slot.range {
                let v = g[j] + (slot.decays ? wd * w0[j] : 0)
                #expect(net.store.parameters[j] == w0[j] - lr * scale * v, "\(slot.name)[\(j - slot.range.lowerBound)]")
                #expect(net.store.optimizerState[j] == v)
            }
        }
    }

    @Test func badFreezeValuesAreExplained() throws {
        let net = try tinyResNet()
        #expect(throws: ModelError.self) { try net.applyFineTuning(freeze: .until("layer9")) }
        #expect(throws: ModelError.self) { try net.applyFineTuning(freeze: .until("fc")) }
        #expect(throws: ModelError.self) { try net.applyFineTuning(freeze: .none, backboneLRMultiplier: -1) }
        do { try net.applyFineTuning(freeze: .until("layer9")) } catch {
            #expect("\(error)".contains("layer9"))
            #expect("\(error)".contains("layer1.0"))
        }
        #expect(FreezeSpec("backbone") == .backbone)
        #expect(FreezeSpec("none") == .none)
        #expect(FreezeSpec("features.13") == .until("features.13"))
    }
}
