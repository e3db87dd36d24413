import Foundation
import Model
import Shards

/// The training recipe's parts, built from the options: the loss, the optimizer and the
/// learning-rate schedule (the Trainer's only way to get them).
extension TrainOptions {
    public enum OptimizerKind: String, Codable, Sendable, CaseIterable { case sgd, adam, adamw }
    public enum LossKind: String, Codable, Sendable, CaseIterable {
        case ce
        case weightedCE = "weighted-ce"
        case focal
    }

    /// The base learning rate: `lrBase` per 256 images scaled by the global batch, else `lr`.
    public var baseLearningRate: Float { lrBase.map { $0 * Float(batchSize) / 256 } ?? lr }

    public func makeOptimizer() -> Optimizer {
        switch optimizer {
        case .sgd: return SGD(momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
        case .adam: return Adam(beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay)
        case .adamw: return Adam.adamW(beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay)
        }
    }

    /// `--class-weights` values computed from the training counts (anything else is a file).
    static let computedClassWeights: Set<String> = ["auto", "effective"]

    /// The loss for classes `classes` with `counts` training samples each; `fileWeights` are
    /// weighted-ce's weights already read from the --class-weights file (by rank 0).
    public func makeLoss(classes: [String], counts: [Int], fileWeights: [Float]? = nil) throws -> Loss {
        func invalid(_ m: String) -> TrainingError { .invalidOption(m) }
        guard labelSmoothing >= 0, labelSmoothing < 1 else { throw invalid("--label-smoothing must be in [0, 1), got \(labelSmoothing)") }
        if loss != .weightedCE, classWeights != "auto" {
            throw invalid("--class-weights applies to --loss weighted-ce (this run uses --loss \(loss.rawValue))")
        }
        switch loss {
        case .ce:
            return CrossEntropyLoss(labelSmoothing: labelSmoothing)
        case .weightedCE:
            return CrossEntropyLoss(classWeights: try fileWeights ?? resolvedClassWeights(classes: classes, counts: counts), labelSmoothing: labelSmoothing)
        case .focal:
            guard labelSmoothing == 0 else { throw invalid("--label-smoothing applies to --loss ce and weighted-ce, not focal") }
            guard focalGamma >= 0, focalGamma.isFinite else { throw invalid("--focal-gamma must be ≥ 0, got \(focalGamma)") }
            var alpha = focalAlpha
            if let a = alpha {
                guard a.count == 1 || a.count == classes.count else {
                    throw invalid("--focal-alpha has \(a.count) values; give one, or one per class (\(classes.count))")
                }
                guard a.allSatisfy({ $0 >= 0 && $0.isFinite }) else { throw invalid("--focal-alpha values must be ≥ 0") }
                if a.count == 1 { alpha = Array(repeating: a[0], count: classes.count) }
            }
            return FocalLoss(gamma: focalGamma, alpha: alpha)
        }
    }

    /// weighted-ce's weights, in class order.
    func resolvedClassWeights(classes: [String], counts: [Int]) throws -> [Float] {
        let weights: [Double]
        switch classWeights {
        case "auto": weights = ClassWeights.balanced(counts: counts)
        case "effective": weights = try ClassWeights(classes: classes, counts: counts).effectiveNumber
        default: weights = try Self.classWeightsFile(classWeights, classes: classes)
        }
        guard weights.contains(where: { $0 > 0 }) else { throw TrainingError.invalidOption("--class-weights: every weight is 0") }
        return weights.map { Float($0) }
    }

    /// Weights from a file: a class_weights.json (`split` or a previous run wrote it; its
    /// "balanced" weights) or a JSON object {"class name": weight} naming every class.
    static func classWeightsFile(_ path: String, classes: [String]) throws -> [Double] {
        func fail(_ m: String) -> TrainingError { .invalidOption("\(path): \(m)") }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read the class-weights file") }
        let weights: [Double]
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], object["classes"] == nil {
            var byName: [String: Double] = [:]
            for (name, value) in object {
                guard let v = value as? Double else { throw fail("weight of class \"\(name)\" is not a number") }
                guard classes.contains(name) else { throw fail("class \"\(name)\" is not a class of this run") }
                byName[name] = v
            }
            weights = try classes.map { c in try byName[c] ?? { throw fail("no weight for class \"\(c)\"") }() }
        } else {
            let file: ClassWeights
            do { file = try ClassWeights.load(path: path) } catch { throw TrainingError.invalidOption("\(error)") }
            guard file.classes == classes else {
                let missing = classes.filter { !file.classes.contains($0) }
                throw fail("its classes differ from this run's" + (missing.isEmpty ? " (order differs)" : " (missing \(missing.prefix(5).joined(separator: ", ")))"))
            }
            weights = file.balanced
        }
        if let i = weights.firstIndex(where: { !($0 >= 0 && $0.isFinite) }) { throw fail("weight of class \"\(classes[i])\" must be finite and ≥ 0, got \(weights[i])") }
        return weights
    }

    /// The metric reduce-on-plateau watches.
    public func plateauMonitor(hasValidation: Bool) -> String {
        plateauMetric ?? (hasValidation ? "val_loss" : "train_loss")
    }

    /// The schedule for a run of `totalSteps` steps of `stepsPerEpoch`.
    public func makeSchedule(stepsPerEpoch: Int, totalSteps: Int, hasValidation: Bool) throws -> LearningRateSchedule {
        func invalid(_ m: String) -> TrainingError { .invalidOption(m) }
        let base = baseLearningRate
        guard base >= 0, base.isFinite else { throw invalid("the learning rate must be ≥ 0 (--lr or --lr-base), got \(base)") }
        var s = LearningRateSchedule(kind: schedule, baseLR: base, totalSteps: totalSteps, stepsPerEpoch: stepsPerEpoch, floor: lrFloor)
        switch (warmupEpochs, warmupSteps) {
        case (.some, .some): throw invalid("give --warmup-epochs or --warmup-steps, not both")
        case let (e?, nil):
            guard e >= 0 else { throw invalid("--warmup-epochs must be ≥ 0") }
            s.warmupSteps = Int((e * Double(stepsPerEpoch)).rounded())
        case let (nil, w?):
            guard w >= 0 else { throw invalid("--warmup-steps must be ≥ 0") }
            s.warmupSteps = w
        case (nil, nil): break
        }
        guard gamma > 0, gamma <= 1 else { throw invalid("--gamma must be in (0, 1], got \(gamma)") }
        s.gamma = gamma
        switch schedule {
        case .step:
            guard stepSize >= 1 else { throw invalid("--step-size must be ≥ 1 epoch") }
            s.stepSize = stepSize
        case .multistep:
            guard !milestones.isEmpty, milestones.allSatisfy({ $0 >= 1 }), milestones == milestones.sorted() else {
                throw invalid("--scheduler multistep needs --milestones: increasing epochs ≥ 1, e.g. 30,60")
            }
            s.milestones = milestones
        case .plateau:
            let metric = plateauMonitor(hasValidation: hasValidation)
            guard ["train_loss", "train_acc", "val_loss", "val_acc"].contains(metric) else {
                throw invalid("--plateau-metric must be train_loss, train_acc, val_loss or val_acc, got \(metric)")
            }
            guard hasValidation || !metric.hasPrefix("val_") else { throw invalid("--plateau-metric \(metric) needs --val") }
            guard plateauPatience >= 0, plateauCooldown >= 0, plateauThreshold >= 0 else {
                throw invalid("--plateau-patience, --plateau-cooldown and --plateau-threshold must be ≥ 0")
            }
            s.plateau.mode = metric.hasSuffix("loss") ? .min : .max
            s.plateau.factor = gamma
            s.plateau.patience = plateauPatience
            s.plateau.threshold = plateauThreshold
            s.plateau.cooldown = plateauCooldown
            s.plateau.minLR = lrFloor
        case .constant, .cosine: break
        }
        return s
    }

    /// The recipe's options for options.json and checkpoints.
    var recipeRecord: [String: String] {
        var r = ["optimizer": optimizer.rawValue, "loss": loss.rawValue, "lr_schedule": schedule.rawValue]
        if let b = lrBase { r["lr_base"] = "\(b)"; r["lr_scaled"] = "\(baseLearningRate)" }
        if optimizer != .sgd { r["beta1"] = "\(beta1)"; r["beta2"] = "\(beta2)"; r["eps"] = "\(eps)" }
        if let w = warmupEpochs { r["warmup_epochs"] = "\(w)" }
        if let w = warmupSteps { r["warmup_steps"] = "\(w)" }
        switch schedule {
        case .step: r["step_size"] = "\(stepSize)"; r["gamma"] = "\(gamma)"
        case .multistep: r["milestones"] = milestones.map(String.init).joined(separator: ","); r["gamma"] = "\(gamma)"
        case .plateau:
            r["gamma"] = "\(gamma)"; r["plateau_metric"] = plateauMetric ?? "default"
            r["plateau_patience"] = "\(plateauPatience)"; r["plateau_threshold"] = "\(plateauThreshold)"
            r["plateau_cooldown"] = "\(plateauCooldown)"
        case .constant, .cosine: break
        }
        switch loss {
        case .ce: break
        case .weightedCE: r["class_weights"] = classWeights
        case .focal:
            r["focal_gamma"] = "\(focalGamma)"
            if let a = focalAlpha { r["focal_alpha"] = a.map { "\($0)" }.joined(separator: ",") }
        }
        if labelSmoothing > 0 { r["label_smoothing"] = "\(labelSmoothing)" }
        return r
    }
}
