import ArgumentParser
import Shards
import Training

/// Training-time augmentation and normalisation flags (part of `TrainingOptionGroup`): a preset,
/// then individual flags that override it. Validation data are never augmented.
struct AugmentationOptionGroup: ParsableArguments {
    @Option(help: "Augmentation preset: none; basic (random resized crop 0.35–1 + horizontal flip); strong (crop 0.25–1 + horizontal flip + RandAugment 2,9 + mixup 0.2 / cutmix 1.0). Flags below override it.")
    var augment = "none"
    @Flag(help: "Random horizontal flip (p = 0.5).") var hflip = false
    @Flag(help: "Random vertical flip (p = 0.5).") var vflip = false
    @Option(help: "Random rotation by up to ±DEG degrees.") var rotate: Float?
    @Option(help: "Random resized crop: area fraction MIN,MAX, e.g. 0.08,1 (crops the cached, already resized image).") var cropScale: String?
    @Option(help: "Aspect-ratio range MIN,MAX of the random resized crop (default 0.75,1.333).") var cropRatio: String?
    @Option(help: "Random affine translation up to this fraction of the size on each axis.") var translate: Float?
    @Option(help: "Random affine scale range MIN,MAX, e.g. 0.9,1.1.") var scale: String?
    @Option(help: "Random affine x-shear up to ±DEG degrees.") var shear: Float?
    @Option(help: "Colour jitter B,C,S,H (brightness, contrast, saturation, hue) or one value for B, C and S.") var colorJitter: String?
    @Option(help: "RandAugment N,M: N operations per image at magnitude M (0–30).") var randaugment: String?
    @Option(help: "Mixup Beta(α, α) parameter (0: off).") var mixup: Float?
    @Option(help: "Cutmix Beta(α, α) parameter (0: off).") var cutmix: Float?
    @Option(help: "Probability that a training sample is mixed (mixup/cutmix; half each when both are on).") var mixProb: Float?
    @Option(help: "Normalisation mean/std: custom (--mean/--std), imagenet (torchvision's constants) or dataset (computed on the training set by rank 0 and broadcast).")
    var normalize = "custom"
    @Option(help: "Debug: write each epoch's first augmented batch (inputs and targets, one .f32 file per sample) to this folder.")
    var dumpAugmented: String?

    func apply(to o: inout TrainOptions) throws {
        guard var a = AugmentOptions.preset(augment) else {
            throw ValidationError("--augment must be one of \(AugmentOptions.presetNames.joined(separator: ", ")), got \(augment)")
        }
        func pair(_ text: String, _ name: String) throws -> [Float] {
            let v: [Float] = try parseList(text, name: name)
            guard v.count == 2 else { throw ValidationError("--\(name) needs two values MIN,MAX, got \(text)") }
            return v
        }
        if hflip { a.hflip = 0.5 }
        if vflip { a.vflip = 0.5 }
        if let rotate { a.rotate = rotate }
        if let cropScale { a.cropScale = try pair(cropScale, "crop-scale") }
        if let cropRatio { a.cropRatio = try pair(cropRatio, "crop-ratio") }
        if let translate { a.translate = translate }
        if let scale { a.scale = try pair(scale, "scale") }
        if let shear { a.shear = shear }
        if let colorJitter {
            let v: [Float] = try parseList(colorJitter, name: "color-jitter")
            switch v.count {
            case 1: (a.brightness, a.contrast, a.saturation) = (v[0], v[0], v[0])
            case 3, 4: (a.brightness, a.contrast, a.saturation) = (v[0], v[1], v[2]); a.hue = v.count == 4 ? v[3] : 0
            default: throw ValidationError("--color-jitter needs B,C,S,H (or B,C,S, or one value), got \(colorJitter)")
            }
        }
        if let randaugment {
            let v: [Int] = try parseList(randaugment, name: "randaugment")
            guard v.count == 2 else { throw ValidationError("--randaugment needs N,M, got \(randaugment)") }
            (a.randAugmentN, a.randAugmentM) = (v[0], v[1])
        }
        if let mixup { a.mixupAlpha = mixup }
        if let cutmix { a.cutmixAlpha = cutmix }
        if let mixProb { a.mixProb = mixProb }
        do { try a.validate() } catch { throw ValidationError(error.description) }
        guard let n = Normalization(rawValue: normalize) else {
            throw ValidationError("--normalize must be one of \(Normalization.allCases.map(\.rawValue).joined(separator: ", ")), got \(normalize)")
        }
        o.augment = a
        o.normalization = n
        o.dumpAugmented = dumpAugmented
    }
}
