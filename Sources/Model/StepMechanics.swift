import Foundation

/// Clipping by global norm: one L2 norm over the whole gradient buffer (every tensor together).
public enum GradientClipping {
    /// The L2 norm of `gradients[0..<count]` (accumulated in Double).
    public static func globalNorm(_ gradients: UnsafePointer<Float>, count: Int) -> Double {
        var s = 0.0
        for i in 0..<count { let g = Double(gradients[i]); s += g * g }
        return s.squareRoot()
    }

    /// Scales the gradients so their global norm is at most `maxNorm` (PyTorch's
    /// `clip_grad_norm_`: factor maxNorm / (norm + 1e-6) when below 1). Returns the norm before
    /// clipping. Run it after the allreduce, so every rank computes the same norm and factor.
    @discardableResult
    public static func clip(_ gradients: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float) -> Double {
        let norm = globalNorm(gradients, count: count)
        let factor = Double(maxNorm) / (norm + 1e-6)
        if factor < 1 {
            let f = Float(factor)
            for i in 0..<count { gradients[i] *= f }
        }
        return norm
    }
}

/// An exponential moving average of a network's parameters and running statistics, updated after
/// every optimizer step: ema ← decay·ema + (1 − decay)·current. It lives in one flat buffer laid
/// out as [parameters | state] and can be swapped into the network (e.g. to evaluate it) and back.
public final class WeightAverage {
    public let decay: Float
    public let parameterCount: Int
    public let stateCount: Int
    /// [parameters | state], `parameterCount + stateCount` floats.
    public let buffer: UnsafeMutableBufferPointer<Float>

    /// Starts at the store's current values.
    public init(decay: Float, store: ParameterStore) {
        self.decay = decay
        parameterCount = store.count; stateCount = store.stateCount
        buffer = .allocate(capacity: store.count + store.stateCount)
        _ = buffer.initialize(from: UnsafeBufferPointer(store.parameterBuffer))
        if stateCount > 0 { (buffer.baseAddress! + parameterCount).initialize(from: store.state, count: stateCount) }
    }

    deinit { buffer.deallocate() }

    /// The state part (running statistics), e.g. to average it across ranks.
    public var stateBuffer: UnsafeMutableBufferPointer<Float> { .init(rebasing: buffer[parameterCount...]) }

    /// One step of the average towards the store's current values.
    public func update(from store: ParameterStore) {
        let d = decay, e = 1 - decay, a = buffer.baseAddress!
        for i in 0..<parameterCount { a[i] = d * a[i] + e * store.parameters[i] }
        let s = a + parameterCount
        for i in 0..<stateCount { s[i] = d * s[i] + e * store.state[i] }
    }

    /// Exchanges the average with the store's parameters and state (call again to swap back).
    public func swap(with store: ParameterStore) {
        let a = buffer.baseAddress!
        for i in 0..<parameterCount { let t = a[i]; a[i] = store.parameters[i]; store.parameters[i] = t }
        let s = a + parameterCount
        for i in 0..<stateCount { let t = s[i]; s[i] = store.state[i]; store.state[i] = t }
    }

    /// The average as checkpoints hold it: the parameter part in canonical order (see `ParameterLayout`).
    public func canonical(_ store: ParameterStore) -> [Float] {
        store.canonical(buffer.baseAddress!, count: buffer.count)
    }

    /// Replaces the average with saved values (`parameterCount + stateCount` floats, as `canonical` gives them).
    public func load(_ values: [Float], store: ParameterStore) {
        precondition(values.count == buffer.count)
        store.setCanonical(values, count: buffer.count, into: buffer.baseAddress!)
    }
}
