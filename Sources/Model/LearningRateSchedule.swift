import Foundation

/// The learning rate as a function of the optimizer step (same on every rank), plus
/// reduce-on-plateau's state, which changes only at epoch ends (`epochEnded`).
///
///     var s = LearningRateSchedule(kind: .cosine, baseLR: 0.05, totalSteps: 4690, stepsPerEpoch: 469)
///     s.warmupSteps = 469   // linear warm-up over the first epoch
///     s.rate(atStep: 0)     // 0.05 / 469, rising to 0.05 at step 468, then cosine down to `floor`
///
/// - Warm-up (before any kind): step s < W runs at rate·(s + 1)/W, where `rate` is what the
///   schedule gives at step W (plateau: its current rate).
/// - `step` and `multistep` count whole epochs from the start of training (warm-up included),
///   like PyTorch's `StepLR`/`MultiStepLR` stepped once per epoch: base·γ^⌊epoch/stepSize⌋ and
///   base·γ^(milestones ≤ epoch).
/// - `cosine` runs half a cosine from base to `floor` over the steps after the warm-up.
/// - `plateau` is PyTorch's `ReduceLROnPlateau` (threshold mode "rel"): after more than
///   `patience` epochs without improving the monitored metric by the relative `threshold`, the
///   rate is multiplied by `factor` (not below `minLR`), then `cooldown` epochs pass before
///   counting again.
///
/// The whole value (configuration and state) is Codable, so a checkpoint carries it.
public struct LearningRateSchedule: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// `baseLR` throughout.
        case constant
        /// Multiplied by `gamma` every `stepSize` epochs.
        case step
        /// Multiplied by `gamma` at each epoch of `milestones`.
        case multistep
        /// Half a cosine from `baseLR` down to `floor` over the steps after the warm-up.
        case cosine
        /// Reduced by `plateau.factor` when the monitored metric stops improving.
        case plateau
    }

    /// Reduce-on-plateau configuration and state.
    public struct Plateau: Sendable, Codable, Equatable {
        /// Whether the monitored metric should fall (a loss) or rise (an accuracy).
        public enum Mode: String, Sendable, Codable { case min, max }
        public var mode: Mode = .min
        public var factor: Float = 0.1
        public var patience = 10
        /// Relative improvement needed: min: m < best·(1 − threshold); max: m > best·(1 + threshold).
        public var threshold = 1e-4
        public var cooldown = 0
        public var minLR: Float = 0
        // State.
        /// The current rate (nil: not yet reduced, the base rate).
        public var lr: Float?
        /// Best metric so far (nil before the first epoch).
        public var best: Double?
        public var badEpochs = 0
        public var cooldownLeft = 0
        public init() {}
    }

    public var kind: Kind
    public var baseLR: Float
    public var totalSteps: Int
    /// Steps per epoch (for epoch-based kinds and warm-up in epochs).
    public var stepsPerEpoch: Int
    /// Lowest rate of `cosine`.
    public var floor: Float
    /// Linear warm-up steps before the schedule.
    public var warmupSteps = 0
    /// `step`: epochs between reductions; `step`/`multistep`/`plateau`: factor per reduction.
    public var stepSize = 30
    public var gamma: Float = 0.1
    /// `multistep`: epochs at which the rate is multiplied by `gamma`.
    public var milestones: [Int] = []
    public var plateau = Plateau()

    public init(kind: Kind, baseLR: Float, totalSteps: Int, stepsPerEpoch: Int = 1, floor: Float = 0) {
        self.kind = kind; self.baseLR = baseLR; self.totalSteps = max(1, totalSteps)
        self.stepsPerEpoch = max(1, stepsPerEpoch); self.floor = floor
    }

    public func rate(atStep step: Int) -> Float {
        let s = max(step, 0)
        if s < warmupSteps {
            return scheduled(atStep: warmupSteps) * Float(s + 1) / Float(warmupSteps)
        }
        return scheduled(atStep: s)
    }

    /// The rate without warm-up.
    private func scheduled(atStep s: Int) -> Float {
        switch kind {
        case .constant:
            return baseLR
        case .step:
            return baseLR * pow(gamma, Float(s / stepsPerEpoch / max(stepSize, 1)))
        case .multistep:
            let epoch = s / stepsPerEpoch
            return baseLR * pow(gamma, Float(milestones.filter { $0 <= epoch }.count))
        case .cosine:
            let span = max(1, totalSteps - warmupSteps)
            let t = Double(min(max(s - warmupSteps, 0), span)) / Double(span)
            return floor + (baseLR - floor) * Float((1 + cos(Double.pi * t)) / 2)
        case .plateau:
            return plateau.lr ?? baseLR
        }
    }

    /// Reduce-on-plateau's step at the end of an epoch, with the monitored metric (the same value
    /// on every rank, so every rank's schedule stays identical). Returns whether the rate was
    /// reduced. Other kinds ignore it.
    @discardableResult
    public mutating func epochEnded(metric: Double) -> Bool {
        guard kind == .plateau, metric.isFinite else { return false }
        var p = plateau
        defer { plateau = p }
        let improved: Bool
        switch (p.best, p.mode) {
        case (nil, _): improved = true
        case let (best?, .min): improved = metric < best * (1 - p.threshold)
        case let (best?, .max): improved = metric > best * (1 + p.threshold)
        }
        if improved { p.best = metric; p.badEpochs = 0 } else { p.badEpochs += 1 }
        if p.cooldownLeft > 0 { p.cooldownLeft -= 1; p.badEpochs = 0 }
        guard p.badEpochs > p.patience else { return false }
        p.cooldownLeft = p.cooldown
        p.badEpochs = 0
        let old = p.lr ?? baseLR
        let new = max(old * p.factor, p.minLR)
        guard old - new > 1e-8 else { return false }
        p.lr = new
        return true
    }

    /// `stateVector` of a schedule that has not started.
    public static let initialStateVector: [Double] = [-1, .nan, 0, 0]

    /// The state as numbers (for the rank-0 broadcast on resume): [lr or −1, best or NaN, bad epochs, cooldown left].
    public var stateVector: [Double] {
        [Double(plateau.lr ?? -1), plateau.best ?? .nan, Double(plateau.badEpochs), Double(plateau.cooldownLeft)]
    }

    /// Restores `stateVector` (a resumed plateau schedule continues where it stopped).
    public mutating func setState(_ v: [Double]) {
        guard v.count == 4 else { return }
        plateau.lr = v[0] >= 0 ? Float(v[0]) : nil
        plateau.best = v[1].isNaN ? nil : v[1]
        plateau.badEpochs = Int(v[2]); plateau.cooldownLeft = Int(v[3])
    }
}
