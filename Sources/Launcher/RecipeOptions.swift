import ArgumentParser
import Model
import Training

/// Loss, optimizer and learning-rate schedule options (part of `TrainingOptionGroup`).
struct RecipeOptionGroup: ParsableArguments {
    @Option(help: "Loss: ce, weighted-ce (class weights, see --class-weights) or focal.") var loss = "ce"
    @Option(help: "weighted-ce class weights: auto (balanced from the training counts), effective (effective number of samples), or a JSON file: a class_weights.json or {\"class\": weight, …}.") var classWeights = "auto"
    @Option(help: "Focal loss γ.") var focalGamma: Float = 2
    @Option(help: "Focal loss α: one value for every class, or one per class (comma-separated).") var focalAlpha: String?
    @Option(help: "Label smoothing ε for ce and weighted-ce.") var labelSmoothing: Float = 0

    @Option(help: "Optimizer: sgd, adam or adamw (decoupled weight decay).") var optimizer = "sgd"
    @Option(help: "Learning rate (default 0.05).") var lr: Float?
    @Option(help: "Learning rate per 256 images: the rate is this × global batch / 256 (instead of --lr).") var lrBase: Float?
    @Option(help: "SGD momentum.") var momentum: Float = 0.9
    @Flag(help: "Nesterov momentum (SGD).") var nesterov = false
    @Option(help: "Adam/AdamW β₁.") var beta1: Float = 0.9
    @Option(help: "Adam/AdamW β₂.") var beta2: Float = 0.999
    @Option(help: "Adam/AdamW ε.") var eps: Float = 1e-8
    @Option(help: "Weight decay (weights only, not biases or normalisation parameters): L2 for sgd and adam, decoupled for adamw.") var weightDecay: Float = 0

    @Option(name: [.customLong("scheduler"), .customLong("lr-schedule")],
            help: "Learning-rate schedule: constant, step (× --gamma every --step-size epochs), multistep (× --gamma at --milestones), cosine (per step to --lr-floor), plateau (× --gamma when --plateau-metric stops improving).")
    var scheduler = "constant"
    @Option(help: "Lowest rate of cosine and plateau.") var lrFloor: Float = 0
    @Option(help: "Linear warm-up over this many epochs (may be fractional) before the schedule.") var warmupEpochs: Double?
    @Option(help: "Linear warm-up over this many optimizer steps before the schedule.") var warmupSteps: Int?
    @Option(help: "step: epochs between reductions.") var stepSize = 30
    @Option(help: "step, multistep, plateau: factor per reduction.") var gamma: Float = 0.1
    @Option(help: "multistep: epochs at which the rate is multiplied by --gamma, e.g. 30,60.") var milestones: String?
    @Option(help: "plateau: the metric watched at each epoch end: val_loss (default with --val), train_loss (default without), val_acc, train_acc.") var plateauMetric: String?
    @Option(help: "plateau: epochs without improvement before a reduction.") var plateauPatience = 10
    @Option(help: "plateau: relative improvement that counts.") var plateauThreshold = 1e-4
    @Option(help: "plateau: epochs after a reduction before counting again.") var plateauCooldown = 0

    func apply(to o: inout TrainOptions) throws {
        func choice<T: RawRepresentable & CaseIterable>(_ value: String, _ name: String) throws -> T where T.RawValue == String {
            guard let v = T(rawValue: value) else {
                throw ValidationError("--\(name) must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got '\(value)'")
            }
            return v
        }
        o.loss = try choice(loss, "loss")
        o.classWeights = classWeights
        o.focalGamma = focalGamma
        o.focalAlpha = try focalAlpha.map { try parseList($0, name: "focal-alpha") }
        o.labelSmoothing = labelSmoothing
        o.optimizer = try choice(optimizer, "optimizer")
        if lr != nil, lrBase != nil { throw ValidationError("give --lr or --lr-base, not both") }
        if let lr { o.lr = lr }
        o.lrBase = lrBase
        o.momentum = momentum
        o.nesterov = nesterov
        o.beta1 = beta1; o.beta2 = beta2; o.eps = eps
        guard beta1 >= 0, beta1 < 1, beta2 >= 0, beta2 < 1, eps > 0 else { throw ValidationError("--beta1 and --beta2 must be in [0, 1), --eps > 0") }
        o.weightDecay = weightDecay
        o.schedule = try choice(scheduler, "scheduler")
        o.lrFloor = lrFloor
        o.warmupEpochs = warmupEpochs
        o.warmupSteps = warmupSteps
        o.stepSize = stepSize
        o.gamma = gamma
        o.milestones = try milestones.map { try parseList($0, name: "milestones") } ?? []
        o.plateauMetric = plateauMetric
        o.plateauPatience = plateauPatience
        o.plateauThreshold = plateauThreshold
        o.plateauCooldown = plateauCooldown
    }
}
