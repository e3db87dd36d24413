import Testing
import Foundation
@testable import Model
import TestSupport

@Suite struct StepMechanicsTests {
    @Test func clippingScalesToTheGlobalNormOnlyWhenAbove() {
        var g: [Float] = [3, 0, -4, 0, 0, 12]             // norm 13
        let norm = g.withUnsafeMutableBufferPointer { GradientClipping.clip($0.baseAddress!, count: $0.count, maxNorm: 6.5) }
        #expect(norm == 13)
        let expected: [Float] = [1.5, 0, -2, 0, 0, 6].map { $0 * Float(13 / (13 + 1e-6)) }
        #expect(zip(g, expected).allSatisfy { abs($0 - $1) < 1e-6 })
        let after = g.withUnsafeBufferPointer { GradientClipping.globalNorm($0.baseAddress!, count: $0.count) }
        #expect(abs(after - 6.5) < 1e-5)
        var small: [Float] = [0.3, 0.4]                   // norm 0.5 ≤ 1: untouched
        _ = small.withUnsafeMutableBufferPointer { GradientClipping.clip($0.baseAddress!, count: 2, maxNorm: 1) }
        #expect(small == [0.3, 0.4])
    }

    @Test func weightAverageFollowsTheRecurrenceAndSwaps() throws {
        let net = try Architectures.build(ModelSpec(architecture: "refcnn", channels: 1, imageSize: 8, classes: 3))
        net.initializeParameters(seed: 1)
        let store = net.store
        let ema = WeightAverage(decay: 0.75, store: store)
        let p0 = Array(store.parameterBuffer), s0 = Array(store.stateBuffer)
        #expect(Array(ema.buffer) == p0 + s0)
        for i in 0..<store.count { store.parameters[i] += 1 }
        for i in 0..<store.stateCount { store.state[i] = 2 }
        ema.update(from: store)
        for i in 0..<store.count { #expect(abs(ema.buffer[i] - (p0[i] + 0.25)) < 1e-6) }
        for i in 0..<store.stateCount { #expect(abs(ema.stateBuffer[i] - (0.75 * s0[i] + 0.5)) < 1e-6) }
        let averaged = Array(ema.buffer), current = Array(store.parameterBuffer) + Array(store.stateBuffer)
        ema.swap(with: store)
        #expect(Array(store.parameterBuffer) + Array(store.stateBuffer) == averaged)
        #expect(Array(ema.buffer) == current)
        ema.swap(with: store)
        #expect(Array(store.parameterBuffer) + Array(store.stateBuffer) == current)
    }

    @Test func checkpointCarriesExtrasAndRunControl() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let spec = ModelSpec(architecture: "refcnn", channels: 1, imageSize: 8, classes: 3)
        let net = try Architectures.build(spec)
        net.initializeParameters(seed: 2)
        var header = CheckpointHeader(model: spec, classes: ["a", "b", "c"], network: net, epoch: 1, step: 5, metrics: [:],
                                      mean: [0.5], std: [0.5], options: [:])
        let extra: [Float] = (0..<(net.store.count + net.store.stateCount)).map { Float($0) * 0.5 }
        header.extras = [.init(name: "ema", count: extra.count)]
        var control = RunControlState(monitor: "val_loss")
        control.best = 0.25; control.bestEpoch = 1; control.ranked = [.init(epoch: 1, value: 0.25, file: "best-epoch001.ckpt")]
        header.runControl = control
        let path = dir.appendingPathComponent("x.ckpt").path
        try extra.withUnsafeBufferPointer { try Checkpoint.save(net, header: header, extras: [$0], to: path) }
        let c = try Checkpoint.load(path: path)
        #expect(c.extras["ema"] == extra)
        #expect(c.header.runControl == control)
        #expect(c.parameters == Array(net.store.parameterBuffer))
        // A truncated file is refused (the extras are part of the size check).
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 12).write(to: URL(fileURLWithPath: path))
        #expect(throws: ModelError.self) { try Checkpoint.load(path: path) }
    }
}
