import Foundation

/// The learning rate as a function of the optimizer step (same on every rank).
///
///     let s = LearningRateSchedule(kind: .cosine, baseLR: 0.05, totalSteps: 4690)
///     s.rate(atStep: 0)      // 0.05, falling to `floor` at the last step
public struct LearningRateSchedule: Sendable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// `baseLR` throughout.
        case constant
        /// Half a cosine from `baseLR` down to `floor` over `totalSteps`.
        case cosine
    }
    public var kind: Kind
    public var baseLR: Float
    public var totalSteps: Int
    public var floor: Float

    public init(kind: Kind, baseLR: Float, totalSteps: Int, floor: Float = 0) {
        self.kind = kind; self.baseLR = baseLR; self.totalSteps = max(1, totalSteps); self.floor = floor
    }

    public func rate(atStep step: Int) -> Float {
        switch kind {
        case .constant:
            return baseLR
        case .cosine:
            let t = Double(min(max(step, 0), totalSteps)) / Double(totalSteps)
            return floor + (baseLR - floor) * Float((1 + cos(Double.pi * t)) / 2)
        }
    }
}
