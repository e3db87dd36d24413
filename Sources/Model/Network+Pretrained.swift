import Foundation

extension Network {
    /// What `loadPretrained` did, tensor by tensor.
    public struct PretrainedReport: CustomStringConvertible, Sendable {
        /// Copied from the file (parameters and BatchNorm running statistics).
        public var loaded: [String] = []
        /// In the model but not in the file: left as they were.
        public var missing: [String] = []
        /// In the file but not in the model: ignored (`num_batches_tracked` is not listed).
        public var unexpected: [String] = []
        /// In both with different shapes or an unconvertible dtype: left as they were.
        public var mismatched: [String] = []
        /// The classifier's tensors, re-initialised because the file has another class count.
        public var reinitialized: [String] = []

        /// Every model tensor came from the file, apart from a re-initialised classifier.
        public var isComplete: Bool { missing.isEmpty && mismatched.isEmpty }

        public var description: String {
            var lines = ["loaded \(loaded.count) tensors"]
            if !reinitialized.isEmpty { lines.append("re-initialised (class count differs): \(reinitialized.joined(separator: ", "))") }
            if !missing.isEmpty { lines.append("missing from the file: \(missing.joined(separator: ", "))") }
            if !mismatched.isEmpty { lines.append("mismatched:\n  " + mismatched.joined(separator: "\n  ")) }
            if !unexpected.isEmpty { lines.append("ignored (not in the model): \(unexpected.joined(separator: ", "))") }
            return lines.joined(separator: "\n")
        }
    }

    /// Loads pretrained weights by torchvision state_dict name from a safetensors file.
    ///
    /// Each parameter and BatchNorm running statistic whose name and shape match a tensor of the
    /// file is copied (F32, F16, BF16 and F64 are converted). When the final linear layer's
    /// shape differs because the file was trained for another class count, that layer is
    /// re-initialised from its initializer with `seed`. Everything else that does not match is
    /// listed in the report; with `requireAll` it is an error instead. Optimizer state is reset.
    ///
    ///     let net = try Architectures.build(ModelSpec(architecture: "resnet18", channels: 3, imageSize: 64, classes: 10))
    ///     net.initializeParameters(seed: 1)
    ///     print(try net.loadPretrained(path: "resnet18.safetensors"))   // fc re-initialised for 10 classes
    @discardableResult
    public func loadPretrained(path: String, seed: UInt64 = 0, requireAll: Bool = false) throws -> PretrainedReport {
        try loadPretrained(SafeTensors(path: path), seed: seed, requireAll: requireAll)
    }

    @discardableResult
    public func loadPretrained(_ file: SafeTensors, seed: UInt64 = 0, requireAll: Bool = false) throws -> PretrainedReport {
        var report = PretrainedReport()
        // The classifier: the last Linear layer's tensors.
        let classifier = layers.last { $0.layer is Linear }.map { $0.name + "." }
        let convertible: Set<String> = ["F32", "F16", "BF16", "F64"]
        // 1. Match names, shapes and dtypes (nothing is written yet).
        var copies: [(slot: TensorSlot, buffer: UnsafeMutablePointer<Float>)] = []
        var classifierMismatch = false
        let all = store.slots.map { ($0, store.parameters, true) } + store.stateSlots.map { ($0, store.state, false) }
        for (slot, buffer, trainable) in all {
            guard let entry = file.entries[slot.name] else { report.missing.append(slot.name); continue }
            if entry.shape != slot.shape {
                if trainable, let classifier, slot.name.hasPrefix(classifier) { classifierMismatch = true; continue }
                report.mismatched.append("\(slot.name): file \(entry.shape) \(entry.dtype), model \(slot.shape)")
            } else if !convertible.contains(entry.dtype) {
                report.mismatched.append("\(slot.name): dtype \(entry.dtype) does not convert to Float")
            } else {
                copies.append((slot, buffer))
            }
        }
        // A classifier trained for another class count is re-initialised whole (weight and bias).
        var reinitialize: [Int] = []
        if classifierMismatch, let classifier {
            reinitialize = store.slots.indices.filter { store.slots[$0].name.hasPrefix(classifier) }
            report.reinitialized = reinitialize.map { store.slots[$0].name }
            copies.removeAll { report.reinitialized.contains($0.slot.name) }
            report.missing.removeAll { report.reinitialized.contains($0) }
        }
        let known = Set(all.map(\.0.name))
        report.unexpected = file.entries.keys.filter { !known.contains($0) && !$0.hasSuffix("num_batches_tracked") }.sorted()
        if requireAll && !report.isComplete {
            throw ModelError.checkpoint(path: file.path, reason: "pretrained weights do not fit \(spec.architecture):\n\(report)")
        }
        // 2. Copy.
        for (slot, buffer) in copies {
            let values = try file.floats(slot.name)
            if !values.isEmpty { store.setCanonical(values, slot: slot, into: buffer) }
            report.loaded.append(slot.name)
        }
        initialize(slots: reinitialize, seed: seed)
        store.optimizerState.update(repeating: 0, count: store.optimizerStateCount)
        return report
    }

    /// Writes the parameters and BatchNorm running statistics as an F32 safetensors file under
    /// their torchvision names (loadable by `loadPretrained` and by PyTorch's
    /// `safetensors.torch.load_file`).
    public func exportSafeTensors(to path: String) throws {
        let parameters = store.canonicalParameters
        let tensors = store.slots.map { s in
            (name: s.name, shape: s.shape, values: Array(parameters[s.range]))
        } + store.stateSlots.map { s in
            (name: s.name, shape: s.shape, values: Array(UnsafeBufferPointer(start: store.state + s.range.lowerBound, count: s.range.count)))
        }
        try SafeTensors.serialize(tensors, metadata: ["format": "pt", "architecture": spec.architecture])
            .write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
