import Testing
import Foundation
@testable import Model
import Support
import TestSupport

/// Image + metadata fusion: the encoding, the fusion layer's gradients, and its place in the zoo.
@Suite struct FusionTests {
    @Test func encodingStandardisesFlagsMissingAndOneHotsSources() {
        let e = MetadataEncoding.fit(latitudes: [10, 20, nil, 30], longitudes: [-5, 5, 1, nil], sources: ["b", "a", nil, "b"])!
        // Fitted on the two complete records only: lat 10, 20; lon −5, 5.
        #expect(e.latMean == 15 && e.latStd == 5 && e.lonMean == 0 && e.lonStd == 5)
        #expect(e.sources == ["a", "b"])
        #expect(e.width == 3 + 3)
        var v = [Float](repeating: 9, count: e.width)
        e.encode(lat: 20, lon: -10, source: "b", into: &v)
        #expect(v == [1, -2, 0, 0, 1, 0])
        e.encode(lat: nil, lon: 3, source: "zzz", into: &v)
        #expect(v == [0, 0, 1, 0, 0, 1])   // missing → flag; unseen source → unknown slot
        e.encode(lat: 15, lon: 0, source: nil, into: &v)
        #expect(v == [0, 0, 0, 0, 0, 1])
        let noSource = MetadataEncoding.fit(latitudes: [1, 1], longitudes: [2, 2], sources: [nil, nil])!
        #expect(noSource.width == 3 && noSource.latStd == 1)
        #expect(MetadataEncoding.fit(latitudes: [nil], longitudes: [1], sources: [nil]) == nil)
    }

    @Test(arguments: [Mode.train, Mode.eval])
    func fusionLayerGradients(mode: Mode) throws {
        var rng = RandomSource(seed: 3)
        let batch = 3, width = 5
        let metadata = (0..<batch * width).map { _ in rng.nextGaussian() }
        let layer = MetadataFusion(metadataWidth: width, hidden: 4, fused: 6, dropout: 0.3)
        let reports = try GradientCheck(layer: layer, input: FeatureShape(channels: 7, height: 1, width: 1), batch: batch,
                                        mode: mode, eps: 1e-2, skipKinks: true, metadata: metadata).run()
        #expect(reports.count == 1 + 4)   // dx + two Linear layers' weight and bias
        for r in reports { #expect(r.relativeError < 1e-2, "\(r)") }
    }

    @Test func fusionSitsAfterThePoolingWithItsOwnTensors() throws {
        var spec = ModelSpec(architecture: "resnet18", channels: 3, imageSize: 32, classes: 10)
        let plain = try Architectures.parameterCount(spec)
        spec.fusion = MetadataEncoding(latMean: 0, latStd: 1, lonMean: 0, lonStd: 1, sources: ["x", "y"])
        let net = try Architectures.build(spec)
        // metadata 6 → 64, concat 512 + 64 → 256, fc 256 → 10 instead of 512 → 10.
        #expect(net.parameterCount == plain + (6 * 64 + 64) + (576 * 256 + 256) - 513 * 10 + 257 * 10)
        let names = net.parameterNames
        #expect(Array(names.suffix(6)) == ["fusion.metadata.0.weight", "fusion.metadata.0.bias", "fusion.fuse.0.weight",
                                           "fusion.fuse.0.bias", "fc.weight", "fc.bias"])
        #expect(net.layers[net.headStart].name == "fusion")
        // The fusion layers are head: --freeze backbone trains them.
        try net.applyFineTuning(freeze: .backbone)
        #expect(net.store.slots.filter { $0.lrScale != 0 }.map(\.name) == Array(names.suffix(6)))
        // The encoding travels with the spec (so with every checkpoint).
        let decoded = try JSONDecoder().decode(ModelSpec.self, from: try JSONEncoder().encode(spec))
        #expect(decoded == spec)
    }

    /// The same image with different metadata gives different logits (the metadata is used).
    @Test func metadataChangesTheOutput() throws {
        var spec = ModelSpec(architecture: "refcnn", channels: 1, imageSize: 8, classes: 3)
        spec.fusion = MetadataEncoding(latMean: 0, latStd: 1, lonMean: 0, lonStd: 1, sources: [])
        let net = try Architectures.build(spec)
        net.initializeParameters(seed: 1)
        net.prepare(maxBatch: 2)
        let x = [Float](repeating: 0.3, count: 2 * 64)
        let meta: [Float] = [1, 2, 0, -1, 0.5, 0]
        let logits = meta.withUnsafeBufferPointer { m in
            Array(UnsafeBufferPointer(start: net.forward(x, batch: 2, mode: .eval, context: StepContext(metadata: m.baseAddress)), count: 6))
        }
        #expect(logits[0..<3] != logits[3..<6])
    }

    /// A checkpoint alone rebuilds the fusion model: spec (with the metadata statistics),
    /// classes, normalisation and options come back, and the rebuilt network gives the same logits.
    @Test func checkpointAloneRebuildsTheFusionModel() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        var spec = ModelSpec(architecture: "refcnn", channels: 1, imageSize: 8, classes: 3, head: [5])
        spec.fusion = MetadataEncoding(latMean: 12.5, latStd: 3, lonMean: -40, lonStd: 7.25, sources: ["a", "b"])
        let net = try Architectures.build(spec)
        net.initializeParameters(seed: 8)
        let path = dir.appendingPathComponent("m.ckpt").path
        try Checkpoint.save(net, header: CheckpointHeader(model: spec, classes: ["x", "y", "z"], network: net, epoch: 1, step: 4,
                                                          metrics: [:], mean: [0.25], std: [0.5], options: ["lr": "0.1", "fusion": "true"]),
                            to: path)
        let c = try Checkpoint.load(path: path)
        #expect(c.header.model == spec && c.header.model.fusion?.lonStd == 7.25)
        #expect(c.header.classes == ["x", "y", "z"] && c.header.mean == [0.25] && c.header.std == [0.5])
        #expect(c.header.options["fusion"] == "true")
        let rebuilt = try Architectures.build(c.header.model)
        try Checkpoint.apply(c, to: rebuilt, path: path)
        var rng = RandomSource(seed: 2)
        let x = (0..<2 * 64).map { _ in rng.nextGaussian() }
        var meta = [Float](repeating: 0, count: 2 * spec.fusion!.width)
        meta.withUnsafeMutableBufferPointer { m in
            spec.fusion!.encode(lat: 14, lon: -30, source: "b", into: m.baseAddress!)
            spec.fusion!.encode(lat: nil, lon: nil, source: nil, into: m.baseAddress! + spec.fusion!.width)
        }
        func logits(_ n: Network) -> [Float] {
            n.prepare(maxBatch: 2)
            return meta.withUnsafeBufferPointer { m in
                Array(UnsafeBufferPointer(start: n.forward(x, batch: 2, mode: .eval, context: StepContext(metadata: m.baseAddress)), count: 6))
            }
        }
        #expect(logits(rebuilt) == logits(net))
    }
}
