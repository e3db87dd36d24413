import Testing
import Foundation
@testable import Model
import Support
import TestSupport

/// resnet18 against an independent implementation: Tests/Fixtures/resnet_reference.py, a NumPy
/// forward pass of torchvision's ResNet written from its definition, reading the weights from
/// the safetensors file our writer produces.
@Suite struct ResNetReferenceTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/resnet_reference.py").path

    static var numpyMissing: String? {
        guard let r = try? TestSupport.run("python3", ["-c", "import numpy"], timeout: 60) else { return "python3 not found" }
        return r.status == 0 ? nil : "python3 cannot import numpy (make test-deps installs python3-numpy)"
    }

    @Test(arguments: [Mode.eval, Mode.train])
    func resnet18LogitsMatchTheNumPyReference(mode: Mode) throws {
        if let reason = Self.numpyMissing {
            print("skipping the resnet18 NumPy reference check: \(reason)")
            return
        }
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        // Training-mode BatchNorm at 32×32 would normalise layer4's 1×1 maps over 2 values per
        // channel (±1 whatever the input: Float rounding decides); 64×64 gives it 8.
        let batch = 2, size = mode == .eval ? 32 : 64
        let net = try Architectures.build(ModelSpec(architecture: "resnet18", channels: 3, imageSize: size, classes: 10))
        net.initializeParameters(seed: 21)
        // Non-trivial BatchNorm parameters and running statistics, so every term is exercised.
        var rng = RandomSource(seed: 5)
        for slot in net.store.slots where slot.name.contains("bn") || slot.name.contains("downsample.1") {
            for i in slot.range { net.store.parameters[i] = slot.name.hasSuffix("weight") ? 0.5 + rng.nextFloat() : 0.2 * rng.nextGaussian() }
        }
        for slot in net.store.stateSlots {
            for i in slot.range { net.store.state[i] = slot.name.hasSuffix("running_var") ? 0.5 + rng.nextFloat() : 0.1 * rng.nextGaussian() }
        }
        let weights = dir.appendingPathComponent("resnet18.safetensors").path
        try net.exportSafeTensors(to: weights)
        let x = (0..<batch * 3 * size * size).map { _ in rng.nextGaussian() }
        let input = dir.appendingPathComponent("input.f32"), output = dir.appendingPathComponent("logits.f32")
        try x.withUnsafeBufferPointer { try Data(buffer: $0).write(to: input) }

        net.prepare(maxBatch: batch)
        let logits = Array(UnsafeBufferPointer(start: net.forward(x, batch: batch, mode: mode), count: batch * 10))

        let r = try TestSupport.run("python3", [Self.script, weights, input.path, "\(batch)", "3", "\(size)", "\(size)",
                                                mode == .eval ? "eval" : "train", output.path], timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let reference = try Data(contentsOf: output).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        try #require(reference.count == logits.count)
        let worst = zip(logits, reference).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-3, "largest logit difference \(worst); ours \(logits.prefix(4)), reference \(reference.prefix(4))")
        // The check is not vacuous: the logits differ between samples and classes.
        #expect(Set(logits.map { ($0 * 1000).rounded() }).count > 10)
    }
}
