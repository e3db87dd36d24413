import Testing
import Foundation
@testable import Model
import TestSupport

/// Optimizers against torch.optim, learning-rate scales, and their state in checkpoints.
///
/// References: scripts/torch_recipe_reference.py (PyTorch 2.x, float32): parameters w = [1, −2]
/// in a param group with weight_decay 0.1 and b = [0.5] in one with weight_decay 0, lr 0.1,
/// three steps with gradients ([0.5, −1], [0.25]), ([0.1, 0.3], [−0.5]), ([−0.2, 0], [1]).
@Suite struct OptimizerTests {
    static let grads: [[Float]] = [[0.5, -1, 0.25], [0.1, 0.3, -0.5], [-0.2, 0, 1]]

    static func store() -> ParameterStore {
        let s = ParameterStore(parameterSpecs: [
            ParameterSpec(name: "w", count: 2, initializer: .constant(0), decays: true),
            ParameterSpec(name: "b", count: 1, initializer: .constant(0), decays: false)], stateSpecs: [])
        s.parameters[0] = 1; s.parameters[1] = -2; s.parameters[2] = 0.5
        return s
    }

    static func run(_ opt: Optimizer, _ store: ParameterStore = store(), steps: Int = 3) -> [[Float]] {
        opt.prepare(store)
        return grads.prefix(steps).map { g in
            for i in 0..<3 { store.gradients[i] = g[i] }
            opt.step(store, lr: 0.1)
            return Array(store.parameterBuffer)
        }
    }

    static func expectClose(_ got: [[Float]], _ torch: [[Float]], _ name: String) {
        for (a, b) in zip(got, torch) {
            for (x, y) in zip(a, b) { #expect(abs(x - y) < 2e-6, "\(name): \(got) vs torch \(torch)") }
        }
    }

    @Test func adamMatchesTorch() {
        let adam = Adam(beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)
        #expect(adam.name == "adam")
        Self.expectClose(Self.run(adam), [[0.8999999761581421, -1.899999976158142, 0.4000000059604645],
                                          [0.8134880661964417, -1.8399364948272705, 0.4365607798099518],
                                          [0.7595351934432983, -1.7842521667480469, 0.39473024010658264]], "adam")
    }

    @Test func adamWMatchesTorch() {
        let adamw = Adam.adamW(beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)
        #expect(adamw.name == "adamw")
        Self.expectClose(Self.run(adamw), [[0.8899999856948853, -1.8799999952316284, 0.4000000059604645],
                                           [0.800627589225769, -1.8183341026306152, 0.4365607798099518],
                                           [0.758076548576355, -1.7669398784637451, 0.39473024010658264]], "adamw")
    }

    @Test func sgdNesterovMatchesTorch() {
        let sgd = SGD(momentum: 0.9, weightDecay: 0.1, nesterov: true)
        Self.expectClose(Self.run(sgd), [[0.8859999775886536, -1.7719999551773071, 0.45249998569488525],
                                         [0.801565945148468, -1.6981319189071655, 0.5272499918937683],
                                         [0.7653195858001709, -1.5883342027664185, 0.35952499508857727]], "sgd nesterov")
    }

    @Test func adamFirstStepByHand() {
        // t = 1: m = 0.1g, v = 0.001g² (β₂ = 0.999); m̂ = g, v̂ = g², so w −= lr·g/(|g| + ε) = lr·sign(g).
        let s = Self.store()
        let adam = Adam(weightDecay: 0)
        adam.prepare(s)
        #expect(s.optimizerStateCount == 2 * 3 + 2)   // m, v, one step count per tensor
        s.gradients[0] = 3; s.gradients[1] = -0.01; s.gradients[2] = 0
        adam.step(s, lr: 0.1)
        #expect(abs(s.parameters[0] - 0.9) < 1e-6 && abs(s.parameters[1] - -1.9) < 1e-5 && s.parameters[2] == 0.5)
        #expect(abs(s.optimizerState[0] - 0.3) < 1e-7 && abs(s.optimizerState[3] - 0.009) < 1e-6)
        #expect(s.optimizerState[6] == 1 && s.optimizerState[7] == 1)
    }

    /// lrScale 0 freezes a tensor (no update, no state change, Adam's count stays 0); 0.5 halves its rate.
    @Test(arguments: ["sgd", "adam", "adamw"])
    func learningRateScales(_ name: String) {
        let opt: Optimizer = name == "sgd" ? SGD(momentum: 0.9, weightDecay: 0.1)
            : Adam(weightDecay: 0.1, decoupledWeightDecay: name == "adamw")
        let frozen = Self.store(), reference = Self.store()
        frozen.slots[1].lrScale = 0
        let a = Self.run(opt, frozen), b = Self.run(opt, reference)
        #expect(a.allSatisfy { $0[2] == 0.5 })
        #expect(a.map { Array($0[0..<2]) } == b.map { Array($0[0..<2]) })
        #expect(frozen.optimizerState[2] == 0)
        if name != "sgd" { #expect(frozen.optimizerState[2 * 3 + 1] == 0 && frozen.optimizerState[2 * 3] == 3) }
        // Scale 0.5 at lr 0.1 is one step at lr 0.05.
        let half = Self.store(), slow = Self.store()
        half.slots[0].lrScale = 0.5; half.slots[1].lrScale = 0.5
        opt.prepare(half); opt.prepare(slow)
        for i in 0..<3 { half.gradients[i] = Self.grads[0][i]; slow.gradients[i] = Self.grads[0][i] }
        opt.step(half, lr: 0.1); opt.step(slow, lr: 0.05)
        #expect(Array(half.parameterBuffer) == Array(slow.parameterBuffer))
    }

    /// Adam's state (m, v, step counts) goes through a checkpoint; loading it into a run with
    /// another optimizer is refused with a clear message.
    @Test func checkpointCarriesOptimizerState() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let spec = ModelSpec(architecture: "refcnn", channels: 1, imageSize: 28, classes: 3, batchNorm: false)
        let net = try Architectures.build(spec)
        net.initializeParameters(seed: 1)
        let adamw = Adam.adamW(weightDecay: 0.01)
        adamw.prepare(net.store)
        for i in 0..<net.store.count { net.store.gradients[i] = Float(i % 7) * 0.01 - 0.03 }
        adamw.step(net.store, lr: 0.01); adamw.step(net.store, lr: 0.01)
        var header = CheckpointHeader(model: spec, classes: ["a", "b", "c"], network: net, epoch: 1, step: 2, metrics: [:],
                                      mean: [0.5], std: [0.5], options: [:])
        var schedule = LearningRateSchedule(kind: .plateau, baseLR: 0.1, totalSteps: 10)
        schedule.epochEnded(metric: 1.5)
        header.schedule = schedule
        let path = dir.appendingPathComponent("a.ckpt").path
        try Checkpoint.save(net, header: header, to: path)
        let c = try Checkpoint.load(path: path)
        #expect(c.header.optimizer == "adamw" && c.header.optimizerStateCount == 2 * net.store.count + net.store.slots.count)
        #expect(c.optimizerState == Array(net.store.optimizerStateBuffer))
        #expect(c.header.schedule == schedule)
        let twin = try Architectures.build(spec)
        adamw.prepare(twin.store)
        try Checkpoint.apply(c, to: twin, path: path)
        #expect(Array(twin.store.optimizerStateBuffer) == Array(net.store.optimizerStateBuffer))
        #expect(Array(twin.store.parameterBuffer) == Array(net.store.parameterBuffer))
        for other in [SGD() as Optimizer, Adam()] {
            let wrong = try Architectures.build(spec)
            other.prepare(wrong.store)
            #expect { try Checkpoint.apply(c, to: wrong, path: path) } throws: { error in
                let text = "\(error)"
                return text.contains(path) && text.contains("adamw") && text.contains(other.name) && text.contains("different optimizer")
            }
        }
    }
}
