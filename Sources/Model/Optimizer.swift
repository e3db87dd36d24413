import Foundation

/// An update rule over the flat buffers of a `ParameterStore`.
///
/// Every optimizer keeps ALL of its state in `store.optimizerState` (laid out as it declares in
/// `stateCount`), so checkpoints and the rank-0 broadcast carry it unchanged, and its `name` is
/// recorded in checkpoints: resuming with another optimizer is refused. Every optimizer multiplies
/// the learning rate by `slot.lrScale` and leaves slots whose `lrScale` is 0 untouched; weight
/// decay applies only to slots that `decays` (weights, not biases or normalisation parameters).
public protocol Optimizer: Sendable {
    /// "sgd", "adam", "adamw": the layout and meaning of the state.
    var name: String { get }
    /// Floats of state for `store`.
    func stateCount(for store: ParameterStore) -> Int
    /// How many blocks of `store.count` floats parallel to the parameters start the state
    /// (they are kept in the parameters' layouts, see `ParameterLayout`).
    var parameterBlocks: Int { get }
    /// Applies one update with learning rate `lr` using `store.gradients` (after `prepare`).
    func step(_ store: ParameterStore, lr: Float)
}

extension Optimizer {
    /// Lays out (zeroed) state for this optimizer in `store.optimizerState`, before a checkpoint or
    /// broadcast fills it; nothing is allocated afterwards.
    public func prepare(_ store: ParameterStore) {
        store.allocateOptimizerState(name: name, count: stateCount(for: store), parameterBlocks: parameterBlocks)
    }

    func checkPrepared(_ store: ParameterStore) {
        precondition(store.optimizerName == name && store.optimizerStateCount == stateCount(for: store),
                     "\(name): optimizer state not prepared (store holds \(store.optimizerName) state)")
    }
}

/// SGD with momentum and L2 weight decay, PyTorch semantics (`torch.optim.SGD`, dampening 0):
/// g ← ∇ + wd·w (only on tensors that decay: weights, not biases or normalisation parameters);
/// v ← μ·v + g; w ← w − lr·v (Nesterov: w ← w − lr·(g + μ·v)).
/// Rates are scaled by each tensor's `lrScale`; frozen tensors (0) and their state are left alone.
/// State: the momentum v, `count` floats (the store's default layout).
public struct SGD: Optimizer, Sendable {
    public static let stateName = "sgd"
    public var momentum: Float
    public var weightDecay: Float
    public var nesterov: Bool

    public init(momentum: Float = 0.9, weightDecay: Float = 0, nesterov: Bool = false) {
        self.momentum = momentum; self.weightDecay = weightDecay; self.nesterov = nesterov
    }

    public var name: String { Self.stateName }
    public func stateCount(for store: ParameterStore) -> Int { store.count }
    public var parameterBlocks: Int { 1 }

    public func step(_ store: ParameterStore, lr: Float) {
        checkPrepared(store)
        let w = store.parameters, g = store.gradients, v = store.optimizerState
        let mu = momentum
        // Nesterov: w −= lr·(g + μ·v) = lr·g + lr·μ·v; plain: w −= lr·v.
        let gradFactor: Float = nesterov ? 1 : 0, velFactor: Float = nesterov ? mu : 1
        for slot in store.slots where slot.lrScale != 0 {
            let wd = slot.decays ? weightDecay : 0
            let rate = lr * slot.lrScale
            for i in slot.range {
                let grad = g[i] + wd * w[i]
                let vel = mu * v[i] + grad
                v[i] = vel
                w[i] -= rate * (gradFactor * grad + velFactor * vel)
            }
        }
    }
}

/// Adam (Kingma & Ba) and AdamW (Loshchilov & Hutter, decoupled weight decay), PyTorch semantics
/// (`torch.optim.Adam` / `AdamW`, amsgrad off): per tensor with step count t (counted per tensor,
/// like PyTorch's per-parameter `step`, so a tensor frozen with lrScale 0 starts at t = 0 when it
/// is unfrozen),
///
///     Adam:  g ← ∇ + wd·w                      AdamW: w ← w·(1 − lr·wd)
///     m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
///     w ← w − lr/(1−β₁ᵗ) · m / (√v / √(1−β₂ᵗ) + ε)
///
/// with wd only on tensors that decay. State: m (`count`), v (`count`), then one step count per
/// tensor slot (a Float: exact up to 2²⁴ steps, beyond which 1 − β₂ᵗ is 1 in float anyway).
public struct Adam: Optimizer, Sendable {
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float
    /// AdamW: weight decay applied to the weights directly, not added to the gradient.
    public var decoupledWeightDecay: Bool

    public init(beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0,
                decoupledWeightDecay: Bool = false) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
    }

    /// AdamW with PyTorch's defaults except weight decay (given).
    public static func adamW(beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float) -> Adam {
        Adam(beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, decoupledWeightDecay: true)
    }

    public var name: String { decoupledWeightDecay ? "adamw" : "adam" }
    public func stateCount(for store: ParameterStore) -> Int { 2 * store.count + store.slots.count }
    /// m and v; the per-tensor step counts follow them.
    public var parameterBlocks: Int { 2 }

    public func step(_ store: ParameterStore, lr: Float) {
        checkPrepared(store)
        let w = store.parameters, g = store.gradients
        let m = store.optimizerState, v = m + store.count, steps = m + 2 * store.count
        let b1 = beta1, b2 = beta2, epsilon = eps
        for (j, slot) in store.slots.enumerated() where slot.lrScale != 0 {
            let t = steps[j] + 1
            steps[j] = t
            let rate = lr * slot.lrScale
            let wd = slot.decays ? weightDecay : 0
            let l2: Float = decoupledWeightDecay ? 0 : wd
            let shrink: Float = decoupledWeightDecay ? 1 - rate * wd : 1
            // Bias corrections in Double, as PyTorch computes them (Python floats).
            let stepSize = Float(Double(rate) / (1 - pow(Double(b1), Double(t))))
            let bc2Sqrt = Float((1 - pow(Double(b2), Double(t))).squareRoot())
            for i in slot.range {
                let grad = g[i] + l2 * w[i]
                let mi = b1 * m[i] + (1 - b1) * grad
                let vi = b2 * v[i] + (1 - b2) * grad * grad
                m[i] = mi; v[i] = vi
                w[i] = w[i] * shrink - stepSize * mi / (vi.squareRoot() / bc2Sqrt + epsilon)
            }
        }
    }
}
