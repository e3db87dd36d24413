import Foundation
import Support

/// What a checkpoint says about itself; stored as JSON after the fixed preamble.
public struct CheckpointHeader: Codable, Equatable, Sendable {
    /// Layout version of the file; readers refuse versions they do not know.
    public var format: Int = Checkpoint.formatVersion
    /// Everything needed to rebuild the network: architecture, input channels and size, class
    /// count, widths, head, dropout and (with `--fusion`) the fitted metadata encoding.
    public var model: ModelSpec
    public var classes: [String]
    public var parameterCount: Int
    public var stateCount: Int
    /// Tensor names and element counts, in buffer order (checked on load).
    public var tensors: [TensorEntry]
    /// Completed epochs and optimizer steps when written.
    public var epoch: Int
    public var step: Int
    /// Metrics of the epoch that wrote it (e.g. "val_acc").
    public var metrics: [String: Double]
    /// Input normalisation: (x/255 − mean[c]) / std[c].
    public var mean: [Float]
    public var std: [Float]
    /// The resolved training options (for the record and for resume).
    public var options: [String: String]
    /// Where the data order stood: with `step` this is the whole resume state of the sampler.
    public var sampler: SamplerState?
    /// SHA-256 of the normalised training manifest the run trained on.
    public var manifestFingerprint: String?
    /// Sums over the current epoch's steps so far (train loss, correct, seen), when written mid-epoch.
    public var epochProgress: [Double]?
    /// The optimizer whose state follows the parameters ("sgd", "adam", "adamw") and its float
    /// count; absent in older files, which hold SGD momentum (`parameterCount` floats).
    public var optimizer: String?
    public var optimizerStateCount: Int?
    /// The learning-rate schedule with its state (reduce-on-plateau's current rate and counters).
    public var schedule: LearningRateSchedule?

    /// The optimizer state layout this file holds.
    public var resolvedOptimizer: (name: String, count: Int) { (optimizer ?? SGD.stateName, optimizerStateCount ?? parameterCount) }
    /// Extra float tensors after the running statistics (e.g. "ema": the weight average), in order.
    public var extras: [TensorEntry]?
    /// Early stopping and best-K ranking state (for exact resume).
    public var runControl: RunControlState?

    /// The data order of a run: every rank rebuilds it from these numbers.
    public struct SamplerState: Codable, Equatable, Sendable {
        public var seed: UInt64
        public var virtualShards: Int
        public var globalBatch: Int
        public var sampleCount: Int
        public init(seed: UInt64, virtualShards: Int, globalBatch: Int, sampleCount: Int) {
            self.seed = seed; self.virtualShards = virtualShards; self.globalBatch = globalBatch; self.sampleCount = sampleCount
        }
    }

    public struct TensorEntry: Codable, Equatable, Sendable {
        public var name: String
        public var count: Int
        public init(name: String, count: Int) { self.name = name; self.count = count }
    }

    public init(model: ModelSpec, classes: [String], network: Network, epoch: Int, step: Int,
                metrics: [String: Double], mean: [Float], std: [Float], options: [String: String]) {
        self.model = model; self.classes = classes
        parameterCount = network.store.count; stateCount = network.store.stateCount
        tensors = (network.store.slots + network.store.stateSlots).map { TensorEntry(name: $0.name, count: $0.range.count) }
        optimizer = network.store.optimizerName; optimizerStateCount = network.store.optimizerStateCount
        self.epoch = epoch; self.step = step; self.metrics = metrics
        self.mean = mean; self.std = std; self.options = options
    }
}

/// The checkpoint file: parameters, optimizer state and running statistics of a network.
///
/// Layout (little-endian):
///
///     "DSTRCKPT"            8 bytes magic
///     u32 format version, u32 reserved
///     u64 header length H, then H bytes of JSON (`CheckpointHeader`)
///     f32 × parameterCount  parameters
///     f32 × O               optimizer state (O = optimizerStateCount: SGD momentum, Adam m, v, steps)
///     (parameters and parameter-shaped state in canonical order: row-major in the PyTorch shape)
///     f32 × stateCount      non-trainable state (BatchNorm running mean/var)
///     f32 × each `extras`   extra tensors (e.g. the EMA of parameters and state), when listed
///     u64 FNV-1a hash of everything above
///
/// Written atomically (temp file + fsync + rename); reading validates the magic, version,
/// every size against the file length and the model, and the hash.
public enum Checkpoint {
    public static let formatVersion = 1
    static let magic: [UInt8] = Array("DSTRCKPT".utf8)

    /// `extras` must match `header.extras` (names and counts, in order).
    public static func save(_ network: Network, header: CheckpointHeader, extras: [UnsafeBufferPointer<Float>] = [], to path: String) throws {
        try save(network, header: header, extras: extras, to: [path])
    }

    /// The same checkpoint, encoded once, written to each of `paths`.
    public static func save(_ network: Network, header: CheckpointHeader, extras: [UnsafeBufferPointer<Float>] = [], to paths: [String]) throws {
        precondition(extras.map(\.count) == (header.extras ?? []).map(\.count), "checkpoint extras do not match the header")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try encoder.encode(header)
        var data = Data()
        precondition(header.resolvedOptimizer == (network.store.optimizerName, network.store.optimizerStateCount),
                     "checkpoint header describes other optimizer state than the network holds")
        data.reserveCapacity(32 + json.count + 4 * (network.store.count + network.store.optimizerStateCount + network.store.stateCount))
        data.append(contentsOf: magic)
        appendInteger(&data, UInt32(formatVersion)); appendInteger(&data, UInt32(0))
        appendInteger(&data, UInt64(json.count))
        data.append(json)
        // Canonical order whatever layouts the layers keep, so checkpoints move between backends.
        network.store.canonicalParameters.withUnsafeBufferPointer { data.append($0) }
        network.store.canonicalOptimizerState.withUnsafeBufferPointer { data.append($0) }
        data.append(UnsafeBufferPointer(network.store.stateBuffer))
        for e in extras { data.append(e) }
        let hash = data.withUnsafeBytes { fnv1a($0) }
        appendInteger(&data, hash)
        for path in paths { try AtomicFile.write(data, to: path) }
    }

    /// A checkpoint read from disk and validated, not yet applied to a network.
    public struct Contents {
        public var header: CheckpointHeader
        public var parameters: [Float]
        public var optimizerState: [Float]
        public var state: [Float]
        /// Extra tensors by name (see `CheckpointHeader.extras`).
        public var extras: [String: [Float]] = [:]
    }

    public static func load(path: String) throws -> Contents {
        func fail(_ reason: String) -> ModelError { .checkpoint(path: path, reason: reason) }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read file") }
        return try data.withUnsafeBytes { raw -> Contents in
            guard raw.count >= 32 + 8 else { throw fail("too short to be a checkpoint (\(raw.count) bytes)") }
            guard Array(raw[0..<8]) == magic else { throw fail("not a distrainer checkpoint (bad magic)") }
            let version = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
            guard version == formatVersion else { throw fail("checkpoint format \(version) is not supported (this build reads \(formatVersion))") }
            let headerLength = Int(raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian)
            guard headerLength > 0, headerLength <= raw.count - 32 else { throw fail("header length \(headerLength) exceeds the file") }
            let header: CheckpointHeader
            do { header = try JSONDecoder().decode(CheckpointHeader.self, from: Data(raw[24..<24 + headerLength])) }
            catch { throw fail("header is not valid: \(error)") }
            let p = header.parameterCount, s = header.stateCount
            guard p >= 0, s >= 0, header.tensors.map(\.count).reduce(0, +) == p + s else {
                throw fail("header tensor sizes do not add up to \(p) parameters + \(s) state")
            }
            let o = header.resolvedOptimizer.count
            guard o >= 0, o <= raw.count else { throw fail("optimizer state size \(o) does not fit the file") }
            let payload = 4 * (p + o + s)
            let extraEntries = header.extras ?? []
            guard extraEntries.allSatisfy({ $0.count >= 0 }) else { throw fail("negative extra tensor size") }
            let expected = 24 + headerLength + payload + 4 * extraEntries.map(\.count).reduce(0, +) + 8
            guard raw.count == expected else { throw fail("file is \(raw.count) bytes, header implies \(expected) (truncated or corrupt)") }
            let stored = raw.loadUnaligned(fromByteOffset: raw.count - 8, as: UInt64.self).littleEndian
            guard fnv1a(UnsafeRawBufferPointer(rebasing: raw[0..<raw.count - 8])) == stored else { throw fail("checksum mismatch (corrupt file)") }
            func floats(_ offset: Int, _ count: Int) -> [Float] {
                (0..<count).map { raw.loadUnaligned(fromByteOffset: offset + 4 * $0, as: Float.self) }
            }
            let base = 24 + headerLength
            var contents = Contents(header: header, parameters: floats(base, p), optimizerState: floats(base + 4 * p, o),
                                    state: floats(base + 4 * (p + o), s))
            var offset = base + 4 * (p + o + s)
            for e in extraEntries { contents.extras[e.name] = floats(offset, e.count); offset += 4 * e.count }
            return contents
        }
    }

    /// Copies the checkpoint into `network`, after checking it was saved from the same architecture.
    /// With `optimizerState` (resume), the network must hold the same optimizer's state layout
    /// (`Optimizer.prepare`); evaluation passes false and takes only parameters and statistics.
    public static func apply(_ contents: Contents, to network: Network, path: String, optimizerState: Bool = true) throws {
        let expected = (network.store.slots + network.store.stateSlots).map { CheckpointHeader.TensorEntry(name: $0.name, count: $0.range.count) }
        guard contents.header.tensors == expected else {
            let mismatch = zip(contents.header.tensors, expected).first { $0 != $1 }
            let detail = mismatch.map { "checkpoint has \($0.0.name) [\($0.0.count)], model has \($0.1.name) [\($0.1.count)]" }
                ?? "checkpoint has \(contents.header.tensors.count) tensors, model has \(expected.count)"
            throw ModelError.checkpoint(path: path, reason: "does not fit model \(network.spec.architecture): \(detail)")
        }
        let saved = contents.header.resolvedOptimizer, store = network.store
        guard saved.name == store.optimizerName || !optimizerState else {
            throw ModelError.checkpoint(path: path, reason: "holds \(saved.name) optimizer state but this run uses --optimizer \(store.optimizerName); "
                                        + "resuming with a different optimizer is not supported (start a new run)")
        }
        guard saved.count == store.optimizerStateCount || !optimizerState else {
            throw ModelError.checkpoint(path: path, reason: "\(saved.name) state has \(saved.count) values, this model needs \(store.optimizerStateCount)")
        }
        contents.parameters.withUnsafeBufferPointer { store.setCanonical($0.baseAddress!, into: store.parameters) }
        if optimizerState, !contents.optimizerState.isEmpty { store.setCanonicalOptimizerState(contents.optimizerState) }
        if !contents.state.isEmpty {
            contents.state.withUnsafeBufferPointer { network.store.state.update(from: $0.baseAddress!, count: $0.count) }
        }
    }

    private static func appendInteger<T: FixedWidthInteger>(_ data: inout Data, _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) }
    }

    /// 64-bit FNV-1a over the bytes, eight lanes wide for speed (a corruption check, not a MAC).
    static func fnv1a(_ raw: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        let prime: UInt64 = 0x100_0000_01b3
        var i = 0
        let n = raw.count
        while i + 8 <= n {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* prime
            i += 8
        }
        while i < n { h = (h ^ UInt64(raw[i])) &* prime; i += 1 }
        return h
    }
}
