import Testing
import Foundation
@testable import Model
import Support

/// The torchvision architectures: parameter counts and names against torchvision, and a
/// forward + backward pass of each at 3×32×32.
@Suite struct ZooTests {
    /// `sum(p.numel() for p in torchvision.models.<name>(num_classes=1000).parameters())`.
    static let torchvisionCounts: [(String, Int)] = [
        ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
        ("mobilenetv2", 3_504_872), ("efficientnet-b0", 5_288_548),
    ]

    @Test(arguments: torchvisionCounts)
    func parameterCountMatchesTorchvision(name: String, count: Int) throws {
        let spec = ModelSpec(architecture: name, channels: 3, imageSize: 224, classes: 1000)
        #expect(try Architectures.parameterCount(spec) == count)
    }

    @Test func parameterCountFollowsTheClassCount() throws {
        // Only the final linear layer changes: (features + 1) per class.
        let r10 = try Architectures.parameterCount(ModelSpec(architecture: "resnet18", channels: 3, imageSize: 32, classes: 10))
        #expect(r10 == 11_689_512 - 990 * 513)
        let m10 = try Architectures.parameterCount(ModelSpec(architecture: "mobilenet_v2", channels: 3, imageSize: 32, classes: 10))
        #expect(m10 == 3_504_872 - 990 * 1281)
        let e10 = try Architectures.parameterCount(ModelSpec(architecture: "efficientnet_b0", channels: 3, imageSize: 64, classes: 10))
        #expect(e10 == 5_288_548 - 990 * 1281)
    }

    @Test func resnet18NamesAreTorchvisionStateDictKeys() throws {
        let net = try Architectures.build(ModelSpec(architecture: "resnet18", channels: 3, imageSize: 32, classes: 1000))
        let names = net.parameterNames, state = net.stateNames
        #expect(net.parameterCount == 11_689_512)
        #expect(names.count == 62)   // len(list(resnet18().parameters()))
        #expect(state.count == 40)   // running_mean + running_var of 20 BatchNorms
        #expect(Array(names.prefix(3)) == ["conv1.weight", "bn1.weight", "bn1.bias"])
        for key in ["layer1.0.conv1.weight", "layer1.1.bn2.bias", "layer2.0.downsample.0.weight",
                    "layer2.0.downsample.1.weight", "layer4.1.conv2.weight", "fc.weight", "fc.bias"] {
            #expect(names.contains(key), "\(key)")
        }
        #expect(!names.contains("layer1.0.downsample.0.weight"))
        #expect(state.contains("bn1.running_mean") && state.contains("layer3.0.downsample.1.running_var"))
        let fc = try #require(net.store.slots.first { $0.name == "fc.weight" })
        #expect(fc.shape == [1000, 512])
        let conv = try #require(net.store.slots.first { $0.name == "layer2.0.conv1.weight" })
        #expect(conv.shape == [128, 64, 3, 3])
    }

    @Test func resnet50NamesAndShapes() throws {
        let layers = try Architectures.layers(ModelSpec(architecture: "resnet50", channels: 3, imageSize: 32, classes: 10))
        var shape = FeatureShape(channels: 3, height: 32, width: 32), specs: [ParameterSpec] = []
        for l in layers {
            shape = try l.layer.configure(input: shape)
            specs += l.layer.parameterSpecs.map { var s = $0; s.name = "\(l.name).\(s.name)"; return s }
        }
        #expect(specs.count == 161)   // len(list(resnet50().parameters()))
        let byName = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0.shape) })
        #expect(byName["layer1.0.conv3.weight"] == [256, 64, 1, 1])
        #expect(byName["layer1.0.downsample.0.weight"] == [256, 64, 1, 1])
        #expect(byName["layer2.0.conv2.weight"] == [128, 128, 3, 3])
        #expect(byName["layer4.2.bn3.weight"] == [2048])
        #expect(byName["fc.weight"] == [10, 2048])
    }

    @Test func mobilenetV2NamesAreTorchvisionStateDictKeys() throws {
        let layers = try Architectures.layers(ModelSpec(architecture: "mobilenetv2", channels: 3, imageSize: 32, classes: 1000))
        var shape = FeatureShape(channels: 3, height: 32, width: 32), specs: [ParameterSpec] = []
        for l in layers {
            shape = try l.layer.configure(input: shape)
            specs += l.layer.parameterSpecs.map { var s = $0; s.name = "\(l.name).\(s.name)"; return s }
        }
        let byName = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0.shape) })
        #expect(specs.count == 158)   // len(list(mobilenet_v2().parameters()))
        #expect(byName["features.0.0.weight"] == [32, 3, 3, 3])
        #expect(byName["features.0.1.weight"] == [32])
        #expect(byName["features.1.conv.0.0.weight"] == [32, 1, 3, 3])   // depthwise, expansion 1
        #expect(byName["features.1.conv.1.weight"] == [16, 32, 1, 1])
        #expect(byName["features.1.conv.2.bias"] == [16])
        #expect(byName["features.2.conv.0.0.weight"] == [96, 16, 1, 1])
        #expect(byName["features.2.conv.1.0.weight"] == [96, 1, 3, 3])
        #expect(byName["features.2.conv.2.weight"] == [24, 96, 1, 1])
        #expect(byName["features.2.conv.3.running_mean"] == nil)   // state, not a parameter
        #expect(byName["features.17.conv.2.weight"] == [320, 960, 1, 1])
        #expect(byName["features.18.0.weight"] == [1280, 320, 1, 1])
        #expect(byName["classifier.1.weight"] == [1000, 1280])
        #expect(byName["classifier.1.bias"] == [1000])
    }

    @Test func efficientNetB0NamesAreTorchvisionStateDictKeys() throws {
        let layers = try Architectures.layers(ModelSpec(architecture: "efficientnet-b0", channels: 3, imageSize: 32, classes: 1000))
        var shape = FeatureShape(channels: 3, height: 32, width: 32), specs: [ParameterSpec] = []
        for l in layers {
            shape = try l.layer.configure(input: shape)
            specs += l.layer.parameterSpecs.map { var s = $0; s.name = "\(l.name).\(s.name)"; return s }
        }
        let byName = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0.shape) })
        #expect(byName["features.0.0.weight"] == [32, 3, 3, 3])
        #expect(byName["features.1.0.block.0.0.weight"] == [32, 1, 3, 3])
        #expect(byName["features.1.0.block.1.fc1.weight"] == [8, 32, 1, 1])
        #expect(byName["features.1.0.block.1.fc2.bias"] == [32])
        #expect(byName["features.1.0.block.2.0.weight"] == [16, 32, 1, 1])
        #expect(byName["features.2.0.block.0.0.weight"] == [96, 16, 1, 1])
        #expect(byName["features.2.0.block.1.0.weight"] == [96, 1, 3, 3])
        #expect(byName["features.2.0.block.2.fc1.weight"] == [4, 96, 1, 1])
        #expect(byName["features.2.0.block.3.1.weight"] == [24])
        #expect(byName["features.3.1.block.1.0.weight"] == [240, 1, 5, 5])
        #expect(byName["features.6.3.block.2.fc1.weight"] == [48, 1152, 1, 1])
        #expect(byName["features.8.0.weight"] == [1280, 320, 1, 1])
        #expect(byName["classifier.1.weight"] == [1000, 1280])
    }

    @Test func classifierHeadAddsAHiddenMLP() throws {
        let plain = try Architectures.parameterCount(ModelSpec(architecture: "resnet18", channels: 3, imageSize: 32, classes: 10))
        let spec = ModelSpec(architecture: "resnet18", channels: 3, imageSize: 32, classes: 10, dropout: 0.1,
                             head: [256, 64], headDropout: 0.3)
        let net = try Architectures.build(spec)
        // fc (512·10 + 10) replaced by 512→256 (+BN), 256→64 (+BN), 64→10.
        let expected = plain - (512 * 10 + 10) + (512 * 256 + 256 + 2 * 256) + (256 * 64 + 64 + 2 * 64) + (64 * 10 + 10)
        #expect(net.parameterCount == expected)
        #expect(Array(net.parameterNames.suffix(10)) == ["fc.0.weight", "fc.0.bias", "fc.1.weight", "fc.1.bias",
                                                         "fc.4.weight", "fc.4.bias", "fc.5.weight", "fc.5.bias",
                                                         "fc.8.weight", "fc.8.bias"])
        #expect(net.stateNames.suffix(4) == ["fc.1.running_mean", "fc.1.running_var", "fc.5.running_mean", "fc.5.running_var"])
        let mobile = try Architectures.build(ModelSpec(architecture: "mobilenetv2", channels: 3, imageSize: 32, classes: 7, head: [32]))
        #expect(Array(mobile.parameterNames.suffix(6)) == ["classifier.1.weight", "classifier.1.bias", "classifier.2.weight",
                                                           "classifier.2.bias", "classifier.5.weight", "classifier.5.bias"])
        #expect(mobile.outputShape.count == 7)
        #expect(throws: ModelError.self) {
            try Architectures.build(ModelSpec(architecture: "resnet18", channels: 3, imageSize: 32, classes: 10, head: [0]))
        }
    }

    @Test func zooRejectsBuildingWithoutBatchNorm() {
        #expect(throws: ModelError.self) {
            try Architectures.build(ModelSpec(architecture: "resnet34", channels: 3, imageSize: 32, classes: 10, batchNorm: false))
        }
    }

    /// Each zoo model: forward (train and eval) + backward at 3×32×32, batch 2, finite outputs
    /// and gradients, and every weight tensor receives some gradient (stochastic depth off, so
    /// that no block is dropped for both samples). Biases may not: at 1×1 resolution a
    /// BatchNorm bias whose output reaches the loss only through another training-mode
    /// BatchNorm (MobileNetV2's last projections) has an exactly zero gradient.
    @Test(arguments: ["resnet18", "resnet34", "resnet50", "mobilenetv2", "efficientnet-b0"])
    func forwardBackwardAt32(name: String) throws {
        let spec = ModelSpec(architecture: name, channels: 3, imageSize: 32, classes: 10, stochasticDepth: 0)
        let net = try Architectures.build(spec)
        net.initializeParameters(seed: 1)
        let batch = 2
        net.prepare(maxBatch: batch)
        var rng = RandomSource(seed: 2)
        let x = (0..<batch * net.inputShape.count).map { _ in rng.nextGaussian() }
        let labels: [Int32] = [3, 7]
        var d = [Float](repeating: 0, count: batch * 10)
        let ids = [11, 12]
        let logits = ids.withUnsafeBufferPointer {
            Array(UnsafeBufferPointer(start: net.forward(x, batch: batch, mode: .train,
                                                         context: StepContext(seed: 1, step: 1, sampleIDs: $0)),
                                      count: batch * 10))
        }
        #expect(logits.allSatisfy { $0.isFinite })
        let r = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: 10, gradScale: 0.5, dLogits: &d)
        #expect(r.lossSum.isFinite)
        net.store.zeroGradients()
        net.backward(x, dLogits: d, batch: batch, mode: .train)
        let g = net.store.gradientBuffer
        #expect(g.allSatisfy { $0.isFinite })
        let silent = net.store.slots.filter { slot in slot.name.hasSuffix("weight") && !g[slot.range].contains { $0 != 0 } }.map(\.name)
        #expect(silent.isEmpty, "no gradient reached \(silent.prefix(5))")
        let eval = net.forward(x, batch: batch, mode: .eval)
        #expect((0..<batch * 10).allSatisfy { eval[$0].isFinite })
    }
}

extension ZooTests {
    /// Multiply-adds at 224×224 against torchvision's documented GFLOPS (which count MACs):
    /// resnet18 1.81, resnet50 4.09, mobilenet_v2 0.30, efficientnet_b0 0.39.
    @Test func summaryMultiplyAddsMatchTorchvision() throws {
        for (name, gmacs) in [("resnet18", 1.81), ("resnet50", 4.09), ("mobilenetv2", 0.30), ("efficientnet-b0", 0.39)] {
            let s = try Architectures.summary(ModelSpec(architecture: name, channels: 3, imageSize: 224, classes: 1000))
            #expect(abs(Double(s.macsPerSample) / 1e9 - gmacs) < 0.01, "\(name): \(s.macsPerSample)")
            #expect(s.output == FeatureShape(features: 1000))
        }
        let net = try Architectures.build(ModelSpec(architecture: "mobilenetv2", channels: 3, imageSize: 32, classes: 10))
        let s = try Architectures.summary(net.spec)
        #expect(s.parameters == net.parameterCount && s.state == net.store.stateCount && s.macsPerSample == net.macsPerSample)
    }
}

extension ZooTests {
    /// Checkpoints written before the zoo fields existed still decode (the new fields are optional).
    @Test func modelSpecDecodesWithoutTheNewFields() throws {
        let old = #"{"architecture":"refcnn","channels":3,"imageSize":32,"classes":10,"batchNorm":true,"dropout":0}"#
        let spec = try JSONDecoder().decode(ModelSpec.self, from: Data(old.utf8))
        #expect(spec == ModelSpec(architecture: "refcnn", channels: 3, imageSize: 32, classes: 10))
        #expect(spec.head == nil && spec.headDropout == nil && spec.stochasticDepth == nil)
        let zoo = ModelSpec(architecture: "efficientnet-b0", channels: 3, imageSize: 64, classes: 5, head: [128], headDropout: 0.3,
                            stochasticDepth: 0.1)
        #expect(try JSONDecoder().decode(ModelSpec.self, from: JSONEncoder().encode(zoo)) == zoo)
    }
}
