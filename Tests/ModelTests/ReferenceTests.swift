import Testing
import Foundation
@testable import Model
import Support

/// Forward passes against plain, independent loops; loss and optimizer against hand-computed values.
@Suite struct ReferenceTests {
    @Test func batchNormTrainingStatistics() throws {
        let bn = BatchNorm2d()
        let input = FeatureShape(channels: 2, height: 2, width: 2)
        _ = try bn.configure(input: input)
        let store = ParameterStore(parameterSpecs: bn.parameterSpecs, stateSpecs: bn.stateSpecs)
        bn.bind(ParameterBinding(parameters: store.slots.map { store.parameters + $0.range.lowerBound },
                                 gradients: store.slots.map { store.gradients + $0.range.lowerBound },
                                 state: store.stateSlots.map { store.state + $0.range.lowerBound }))
        store.parameters[0] = 1; store.parameters[1] = 2   // gamma
        store.parameters[2] = 0; store.parameters[3] = 1   // beta
        // batch 2; channel 0 = 1,2,3,4 | 5,6,7,8 → mean 4.5, var 5.25 ; channel 1 constant 3
        let x: [Float] = [1, 2, 3, 4, 3, 3, 3, 3, 5, 6, 7, 8, 3, 3, 3, 3]
        var y = [Float](repeating: 0, count: 16)
        bn.forward(x, &y, batch: 2, mode: .train, context: StepContext())
        let inv = 1 / (5.25 + 1e-5).squareRoot()
        #expect(abs(y[0] - Float((1 - 4.5) * inv)) < 1e-5)
        #expect(abs(y[11] - Float((8 - 4.5) * inv)) < 1e-5)
        #expect(abs(y[4] - 1) < 1e-5)          // constant channel → beta
        // running stats: momentum 0.1, unbiased variance 5.25·8/7 = 6
        #expect(abs(store.state[0] - 0.45) < 1e-6)
        #expect(abs(store.state[1] - 0.3) < 1e-6)
        #expect(abs(store.state[2] - (0.9 + 0.1 * 6)) < 1e-5)
        #expect(abs(store.state[3] - 0.9) < 1e-6)
    }

    @Test func crossEntropyHandComputed() {
        // logits (1, 2, 3), label 2: loss = log(e^1 + e^2 + e^3) − 3 = 0.40760596
        let logits: [Float] = [1, 2, 3, 0, 0, 0]
        let labels: [Int32] = [2, 0]
        var d = [Float](repeating: 0, count: 6), pred = [Int32](repeating: -1, count: 2)
        let r = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: 2, classes: 3,
                                             gradScale: 0.5, dLogits: &d, predicted: &pred)
        #expect(abs(r.lossSum - (0.40760596 + log(3.0))) < 1e-6)
        #expect(r.correct == 2)   // argmax of equal logits is the first class
        #expect(pred == [2, 0])
        let p = [exp(1.0), exp(2.0), exp(3.0)].map { $0 / (exp(1.0) + exp(2.0) + exp(3.0)) }
        #expect(abs(Double(d[0]) - 0.5 * p[0]) < 1e-6)
        #expect(abs(Double(d[2]) - 0.5 * (p[2] - 1)) < 1e-6)
        #expect(abs(Double(d[3]) - 0.5 * (1.0 / 3 - 1)) < 1e-6)
    }

    @Test func crossEntropyGradientMatchesFiniteDifferences() {
        var rng = RandomSource(seed: 9)
        let batch = 4, classes = 5
        var logits = (0..<batch * classes).map { _ in rng.nextGaussian() * 2 }
        let labels = (0..<batch).map { _ in Int32(rng.nextInt(below: classes)) }
        var d = [Float](repeating: 0, count: logits.count)
        _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes, gradScale: 1, dLogits: &d)
        for i in 0..<logits.count {
            let e: Float = 1e-2
            logits[i] += e
            let lp = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes).lossSum
            logits[i] -= 2 * e
            let lm = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes).lossSum
            logits[i] += e
            let numeric = (lp - lm) / Double(2 * e)
            #expect(abs(numeric - Double(d[i])) < 1e-3 * max(1, abs(numeric)))
        }
    }

    @Test func sgdMomentumAndWeightDecayByHand() {
        let store = ParameterStore(parameterSpecs: [
            ParameterSpec(name: "w", count: 1, initializer: .constant(0), decays: true),
            ParameterSpec(name: "b", count: 1, initializer: .constant(0), decays: false)], stateSpecs: [])
        store.parameters[0] = 1; store.parameters[1] = 1
        let sgd = SGD(momentum: 0.9, weightDecay: 0.1)
        // step 1: g_w = 0.5 + 0.1·1 = 0.6, v = 0.6, w = 1 − 0.1·0.6 = 0.94 ; b: g = 0.5, v = 0.5, b = 0.95
        store.gradients[0] = 0.5; store.gradients[1] = 0.5
        sgd.step(store, lr: 0.1)
        #expect(abs(store.parameters[0] - 0.94) < 1e-6)
        #expect(abs(store.parameters[1] - 0.95) < 1e-6)
        // step 2: g_w = 0.5 + 0.094 = 0.594, v = 0.54 + 0.594 = 1.134, w = 0.94 − 0.1134 = 0.8266
        sgd.step(store, lr: 0.1)
        #expect(abs(store.parameters[0] - 0.8266) < 1e-5)
        // b: v = 0.45 + 0.5 = 0.95, b = 0.95 − 0.095 = 0.855
        #expect(abs(store.parameters[1] - 0.855) < 1e-6)
    }

    @Test func refcnnParameterCountMatchesPyTorch() throws {
        let net = try Architectures.build(ModelSpec(architecture: "refcnn", channels: 3, imageSize: 32, classes: 10))
        #expect(net.parameterCount == 141_354)
        #expect(net.parameterNames.first == "features.0.weight")
        #expect(net.parameterNames.last == "fc.bias")
        #expect(net.stateNames.contains("features.1.running_mean"))
        // 58.4 MFLOP forward per 3×32×32 image (../shared/bench/README.md): 2 × MACs
        #expect(abs(Double(2 * net.macsPerSample) / 1e6 - 58.4) < 0.1)
    }

    @Test func cnnSmallIsAFewHundredThousandParameters() throws {
        let net = try Architectures.build(ModelSpec(architecture: "cnn-small", channels: 1, imageSize: 28, classes: 10, dropout: 0.2))
        #expect(net.parameterCount > 200_000 && net.parameterCount < 500_000)
        let narrow = try Architectures.build(ModelSpec(architecture: "cnn-small", channels: 3, imageSize: 32, classes: 5, widths: [8, 16]))
        #expect(narrow.parameterCount < 10_000)
    }

    @Test func unknownArchitectureIsAClearError() {
        #expect(throws: ModelError.self) { try Architectures.build(ModelSpec(architecture: "vgg99", channels: 3, imageSize: 32, classes: 10)) }
    }
}
