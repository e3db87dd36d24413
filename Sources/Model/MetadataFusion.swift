/// Image + metadata fusion (`--fusion`), placed after the global pooling:
///
///     metadata [M] → metadata.0 Linear(64) → metadata.1 ReLU ─┐
///     pooled image features [F] ──────────────────────────────┴→ concat [F + 64]
///         → fuse.0 Linear(256) → fuse.1 ReLU → fuse.2 Dropout(p) → (the classifier)
///
/// The metadata vector (`MetadataEncoding`, [batch, M]) arrives in `StepContext.metadata`;
/// without it (nil) the layer sees all-zero metadata. x: [batch, F] → y: [batch, 256].
public final class MetadataFusion: CompositeLayer {
    public let kind = "fusion"
    public let metadataWidth: Int
    let encoder: Sequential, fuse: Sequential
    private var features = 0, hidden = 0
    /// [maxBatch, M] metadata copy, [maxBatch, hidden] encoder output, [maxBatch, F + hidden] concat and its gradient.
    private var metaIn: FloatBuffer?, metaOut: FloatBuffer?, joined: FloatBuffer?, dJoined: FloatBuffer?, dMeta: FloatBuffer?

    public init(metadataWidth: Int, hidden: Int = 64, fused: Int = 256, dropout: Float = 0.2) {
        self.metadataWidth = metadataWidth
        encoder = Sequential([NamedLayer("metadata.0", Linear(outFeatures: hidden)), NamedLayer("metadata.1", ReLU())])
        fuse = Sequential([NamedLayer("fuse.0", Linear(outFeatures: fused)), NamedLayer("fuse.1", ReLU()),
                           NamedLayer("fuse.2", Dropout(p: dropout, salt: 0xF05E))])
    }

    public var sublayers: [NamedLayer] { encoder.sublayers + fuse.sublayers }

    public func configure(input: FeatureShape) throws -> FeatureShape {
        guard metadataWidth >= 1 else { throw ModelError.invalidShape(layer: kind, input: input, reason: "no metadata features") }
        features = input.count
        hidden = try encoder.configure(input: FeatureShape(features: metadataWidth)).count
        return try fuse.configure(input: FeatureShape(features: features + hidden))
    }

    public var parameterSpecs: [ParameterSpec] { encoder.parameterSpecs + fuse.parameterSpecs }

    public func bind(_ b: ParameterBinding) {
        let np = encoder.parameterSpecs.count
        encoder.bind(b.slice(parameters: 0..<np, state: 0..<0))
        fuse.bind(b.slice(parameters: np..<b.parameters.count, state: 0..<0))
    }

    public func prepare(maxBatch: Int) {
        encoder.prepare(maxBatch: maxBatch); fuse.prepare(maxBatch: maxBatch)
        metaIn = FloatBuffer(count: maxBatch * metadataWidth)
        metaOut = FloatBuffer(count: maxBatch * hidden)
        dMeta = FloatBuffer(count: maxBatch * hidden)
        joined = FloatBuffer(count: maxBatch * (features + hidden))
        dJoined = FloatBuffer(count: maxBatch * (features + hidden))
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, mode: Mode,
                        context: StepContext) {
        let m = metaIn!.pointer, h = metaOut!.pointer, j = joined!.pointer, width = features + hidden
        if let meta = context.metadata { m.update(from: meta, count: batch * metadataWidth) }
        else { m.update(repeating: 0, count: batch * metadataWidth) }
        encoder.forward(m, h, batch: batch, mode: mode, context: context)
        for n in 0..<batch {
            (j + n * width).update(from: x + n * features, count: features)
            (j + n * width + features).update(from: h + n * hidden, count: hidden)
        }
        fuse.forward(j, y, batch: batch, mode: mode, context: context)
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, mode: Mode) {
        let dj = dJoined!.pointer, dh = dMeta!.pointer, width = features + hidden
        fuse.backward(x: joined!.pointer, y: y, dy: dy, dx: dj, batch: batch, mode: mode)
        for n in 0..<batch {
            if let dx { (dx + n * features).update(from: dj + n * width, count: features) }
            (dh + n * hidden).update(from: dj + n * width + features, count: hidden)
        }
        encoder.backward(x: metaIn!.pointer, y: metaOut!.pointer, dy: dh, dx: nil, batch: batch, mode: mode)
    }
}
