/// An update rule over the flat buffers of a `ParameterStore`.
public protocol Optimizer {
    /// Applies one update with learning rate `lr` using `store.gradients`.
    func step(_ store: ParameterStore, lr: Float)
}

/// SGD with momentum and L2 weight decay, PyTorch semantics:
/// g ← ∇ + wd·w (only on tensors that decay: weights, not biases or normalisation parameters);
/// v ← μ·v + g; w ← w − lr·v (Nesterov: w ← w − lr·(g + μ·v)), with lr scaled by each tensor's
/// `lrScale`; frozen tensors (`lrScale` 0) and their momentum are left alone.
public struct SGD: Optimizer, Sendable {
    public var momentum: Float
    public var weightDecay: Float
    public var nesterov: Bool

    public init(momentum: Float = 0.9, weightDecay: Float = 0, nesterov: Bool = false) {
        self.momentum = momentum; self.weightDecay = weightDecay; self.nesterov = nesterov
    }

    public func step(_ store: ParameterStore, lr: Float) {
        let w = store.parameters, g = store.gradients, v = store.optimizerState
        let mu = momentum
        for slot in store.slots where slot.lrScale != 0 {
            let lr = lr * slot.lrScale, wd = slot.decays ? weightDecay : 0
            for i in slot.range {
                let grad = g[i] + wd * w[i]
                let vel = mu * v[i] + grad
                v[i] = vel
                w[i] -= lr * (nesterov ? grad + mu * vel : vel)
            }
        }
    }
}
