/// A layer with trainable tensors that can skip its weight-gradient work (Conv2d, Linear,
/// BatchNorm2d); `Network.applyFineTuning` sets `frozen` when all its tensors have `lrScale` 0.
protocol FreezableLayer: Layer {
    var frozen: Bool { get set }
}

/// Which parameters fine-tuning keeps fixed.
///
/// - `none`: everything trains.
/// - `backbone`: everything before the global average pooling is frozen; the head (the
///   classifier, its hidden MLP and the metadata-fusion layers) trains.
/// - `until(prefix)`: every tensor up to and including the LAST tensor whose torchvision-style
///   name is `prefix` or starts with `prefix.` is frozen, e.g. `layer3` freezes conv1, bn1,
///   layer1, layer2 and layer3 of a ResNet; `features.13` the first 14 blocks of MobileNetV2;
///   `layer4.0.conv1` stops inside a block.
public enum FreezeSpec: Equatable, Sendable, Codable, CustomStringConvertible {
    case none, backbone
    case until(String)

    /// Parses the `--freeze` value: "none", "backbone" or a layer-name prefix.
    public init(_ text: String) {
        switch text {
        case "none", "": self = .none
        case "backbone": self = .backbone
        default: self = .until(text)
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .backbone: return "backbone"
        case let .until(p): return p
        }
    }
}

extension Network {
    /// Index of the first top-level layer of the head: the one after the last global pooling
    /// (0 when the network has none, i.e. everything is head).
    public var headStart: Int {
        layers.lastIndex { $0.layer is GlobalAvgPool }.map { $0 + 1 } ?? 0
    }

    /// The number of leading tensors in `store.slots` that belong to the backbone.
    public var backboneTensorCount: Int {
        layers[..<headStart].map { $0.layer.parameterSpecs.count }.reduce(0, +)
    }

    /// Sets every tensor's learning-rate multiplier: 0 for frozen tensors, `backboneLRMultiplier`
    /// for the other backbone tensors, 1 for the head. Frozen Conv2d/Linear/BatchNorm layers
    /// then compute no weight gradients, frozen BatchNorms run in eval mode (running statistics
    /// untouched), and `backward` stops below the lowest trainable layer. Optimizers skip
    /// tensors whose `lrScale` is 0. Can be called again (e.g. to unfreeze at an epoch).
    public func applyFineTuning(freeze: FreezeSpec, backboneLRMultiplier: Float = 1) throws {
        guard backboneLRMultiplier >= 0, backboneLRMultiplier.isFinite else {
            throw ModelError.invalidOption("--backbone-lr-mult must be a finite number ≥ 0, got \(backboneLRMultiplier)")
        }
        let backbone = backboneTensorCount
        var frozen = 0
        switch freeze {
        case .none: frozen = 0
        case .backbone: frozen = backbone
        case let .until(prefix):
            guard let last = store.slots.lastIndex(where: { $0.name == prefix || $0.name.hasPrefix(prefix + ".") }) else {
                let blocks = layers.filter { !$0.layer.parameterSpecs.isEmpty }.map(\.name)
                throw ModelError.invalidOption("--freeze \(prefix): no parameter of \(spec.architecture) is named \(prefix) or \(prefix).…; "
                                               + "use none, backbone or a layer name such as \(blocks.prefix(6).joined(separator: ", "))…")
            }
            frozen = last + 1
        }
        guard frozen < store.slots.count else {
            throw ModelError.invalidOption("--freeze \(freeze) freezes every parameter of \(spec.architecture): nothing left to train")
        }
        for i in store.slots.indices {
            store.slots[i].lrScale = i < frozen ? 0 : i < backbone ? backboneLRMultiplier : 1
        }
        updateFrozenLayers()
    }

    /// Marks each freezable layer frozen when all its tensors have `lrScale` 0, and finds the
    /// lowest top-level layer with a trainable tensor.
    func updateFrozenLayers() {
        var slot = 0
        func visit(_ layer: Layer) {
            if let composite = layer as? CompositeLayer {
                for s in composite.sublayers { visit(s.layer) }
                return
            }
            let n = layer.parameterSpecs.count
            if let f = layer as? FreezableLayer {
                f.frozen = n > 0 && store.slots[slot..<slot + n].allSatisfy { $0.lrScale == 0 }
            }
            slot += n
        }
        firstTrainableLayer = layers.count
        for (i, l) in layers.enumerated() {
            let start = slot
            visit(l.layer)
            if firstTrainableLayer == layers.count, store.slots[start..<slot].contains(where: { $0.lrScale != 0 }) {
                firstTrainableLayer = i
            }
        }
        precondition(slot == store.slots.count, "layer tree and parameter store disagree")
    }
}
