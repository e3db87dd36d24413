import Foundation
import Support

/// How one training sample is mixed with a partner (mixup or cutmix).
public struct MixDraw: Sendable, Equatable {
    /// The partner's index in the whole training set.
    public var partner: Int
    /// Weight of the sample's own label (for cutmix: 1 − the pasted box's area fraction).
    public var lambda: Float
    /// Cutmix: the partner's box [x0, x1) × [y0, y1) pasted over the sample; nil: mixup.
    public var box: (x0: Int, y0: Int, x1: Int, y1: Int)?

    public static func == (l: MixDraw, r: MixDraw) -> Bool {
        l.partner == r.partner && l.lambda == r.lambda && l.box?.x0 == r.box?.x0 && l.box?.y0 == r.box?.y0
            && l.box?.x1 == r.box?.x1 && l.box?.y1 == r.box?.y1
    }
}

/// Mixup and cutmix, decided per sample from (seed, epoch, sample index) only: whether sample i
/// is mixed, its partner (uniform over the WHOLE training set, never itself), λ ~ Beta(α, α)
/// and the cutmix box. The rank that loads sample i also loads (and augments, with the
/// partner's own draws) its partner, so the mixed pixels and the soft target of a sample are
/// the same whatever the world size or batch position. The trainer recomputes the same draw
/// from the batch's indices to build soft targets.
public struct SampleMixer: Sendable {
    public let options: AugmentOptions
    public let seed: UInt64
    /// Size of the training set (partners are drawn from all of it).
    public let population: Int
    public let size: Int

    public init(options: AugmentOptions, seed: UInt64, population: Int, size: Int) {
        self.options = options; self.seed = seed; self.population = population; self.size = size
    }

    /// nil when sample `sample` of `epoch` is not mixed.
    public func draw(sample: Int, epoch: Int) -> MixDraw? {
        let o = options
        guard o.mixes, population > 1 else { return nil }
        var rng = Augmenter.generator(seed: seed, epoch: epoch, sample: sample, purpose: Augmenter.purposeMix)
        guard rng.nextFloat() < o.mixProb else { return nil }
        let cut = o.cutmixAlpha > 0 && (o.mixupAlpha <= 0 || rng.nextFloat() < 0.5)
        var partner = rng.nextInt(below: population - 1)
        if partner >= sample { partner += 1 }
        let lam = Self.beta(&rng, alpha: cut ? o.cutmixAlpha : o.mixupAlpha)
        guard cut else { return MixDraw(partner: partner, lambda: lam, box: nil) }
        // timm's rand_bbox: a box of side √(1 − λ)·size centred uniformly, clipped; λ corrected to the box.
        let r = (1 - lam).squareRoot()
        let cw = Int(Float(size) * r), ch = Int(Float(size) * r)
        let cx = rng.nextInt(below: size), cy = rng.nextInt(below: size)
        let x0 = min(max(cx - cw / 2, 0), size), x1 = min(max(cx + cw / 2, 0), size)
        let y0 = min(max(cy - ch / 2, 0), size), y1 = min(max(cy + ch / 2, 0), size)
        let area = Float((x1 - x0) * (y1 - y0)) / Float(size * size)
        return MixDraw(partner: partner, lambda: 1 - area, box: (x0, y0, x1, y1))
    }

    /// Mixes `partner`'s sample into `own` (both `channels` planes of `size`²): mixup blends
    /// λ·own + (1 − λ)·partner; cutmix copies the partner's box.
    public func mix(_ own: UnsafeMutablePointer<Float>, partner: UnsafePointer<Float>, draw: MixDraw, channels: Int) {
        let plane = size * size
        if let b = draw.box {
            for ch in 0..<channels {
                for y in b.y0..<b.y1 {
                    let row = ch * plane + y * size
                    for x in b.x0..<b.x1 { own[row + x] = partner[row + x] }
                }
            }
        } else {
            let l = draw.lambda, m = 1 - draw.lambda
            for i in 0..<(channels * plane) { own[i] = l * own[i] + m * partner[i] }
        }
    }

    /// Soft targets [count, classes] of a batch: λ on the sample's label, 1 − λ on its
    /// partner's (`allLabels`: the label of every training sample), one-hot when not mixed.
    /// Each row sums to 1.
    public func softTargets(indices: [Int], labels: UnsafePointer<Int32>, allLabels: [Int32], epoch: Int, classes: Int,
                            into t: UnsafeMutablePointer<Float>) {
        for (n, i) in indices.enumerated() {
            let row = t + n * classes
            for k in 0..<classes { row[k] = 0 }
            if let d = draw(sample: i, epoch: epoch) {
                row[Int(labels[n])] += d.lambda
                row[Int(allLabels[d.partner])] += 1 - d.lambda
            } else {
                row[Int(labels[n])] = 1
            }
        }
    }

    /// Beta(α, α) from two Gamma(α) draws (Marsaglia–Tsang; α < 1 boosted by U^(1/α)).
    static func beta(_ rng: inout RandomSource, alpha: Float) -> Float {
        let x = gamma(&rng, alpha: Double(alpha)), y = gamma(&rng, alpha: Double(alpha))
        return x + y > 0 ? Float(x / (x + y)) : 0.5
    }

    static func gamma(_ rng: inout RandomSource, alpha: Double) -> Double {
        if alpha < 1 {
            let u = max(rng.nextDouble(), 1e-300)
            return gamma(&rng, alpha: alpha + 1) * pow(u, 1 / alpha)
        }
        let d = alpha - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x: Double, v: Double
            repeat { x = Double(rng.nextGaussian()); v = 1 + c * x } while v <= 0
            v = v * v * v
            let u = rng.nextDouble()
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if log(max(u, 1e-300)) < 0.5 * x * x + d * (1 - v + log(v)) { return d * v }
        }
    }
}
