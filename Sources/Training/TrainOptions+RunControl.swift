import Foundation
import Model

/// Step mechanics and run control: gradient accumulation, clipping, EMA, early stopping, best-K.
///
/// Accumulation: `batchSize` is the global MICRO-batch (one forward/backward over all ranks); an
/// optimizer step processes `accumSteps` of them, so the sampler, steps per epoch, virtual shards,
/// throughput and checkpoints all use the step batch `batchSize × accumSteps`. Each rank's part of a
/// step's batch is split into `accumSteps` consecutive slices; their gradients (loss scaled by
/// 1/step batch) accumulate and are allreduced once per step, so the update equals the one of a
/// single `batchSize × accumSteps` batch (BatchNorm aside: it normalises over each micro-batch).
public struct RunControlOptions: Codable, Sendable {
    /// Micro-batches per optimizer step.
    public var accumSteps = 1
    /// Clip the (allreduced) gradient to this global L2 norm.
    public var clipGradNorm: Float? = nil
    /// Keep an exponential moving average of the weights with this decay (evaluated alongside).
    public var emaDecay: Float? = nil
    /// Stop after this many complete epochs without an improvement of `monitor` by more than `earlyStopMinDelta`.
    public var earlyStopPatience: Int? = nil
    public var earlyStopMinDelta = 0.0
    /// The metric for best.ckpt, best-K and early stopping (nil: val_acc with validation data, else train_acc).
    public var monitor: String? = nil
    /// Keep this many best checkpoints (best-epochNNN.ckpt) besides best.ckpt and last.ckpt (1: best.ckpt only).
    public var keepBest = 1

    public init() {}

    /// The monitored metric and the history keys it may name.
    func resolvedMonitor(hasValidation: Bool) throws -> String {
        var available = ["train_loss", "train_acc"]
        if hasValidation {
            available += ["val_loss", "val_acc", "val_macro_f1"]
            if emaDecay != nil { available += ["val_loss_ema", "val_acc_ema", "val_macro_f1_ema"] }
        }
        let m = monitor ?? (hasValidation ? "val_acc" : "train_acc")
        guard available.contains(m) else {
            throw TrainingError.invalidOption("--monitor \(m) is not available in this run (choose from \(available.joined(separator: ", ")))")
        }
        return m
    }

    /// Losses (and calibration errors) are better when lower; everything else when higher.
    static func higherIsBetter(_ metric: String) -> Bool { !(metric.contains("loss") || metric.contains("ece")) }

    func validate() throws {
        guard accumSteps >= 1 else { throw TrainingError.invalidOption("--accum-steps must be at least 1, got \(accumSteps)") }
        if let c = clipGradNorm, !(c > 0) { throw TrainingError.invalidOption("--clip-grad-norm must be positive, got \(c)") }
        if let d = emaDecay, !(d > 0 && d < 1) { throw TrainingError.invalidOption("--ema-decay must be in (0, 1), got \(d)") }
        if let p = earlyStopPatience, p < 1 { throw TrainingError.invalidOption("--early-stop-patience must be at least 1, got \(p)") }
        guard earlyStopMinDelta >= 0 else { throw TrainingError.invalidOption("--early-stop-min-delta must not be negative") }
        guard keepBest >= 1 else { throw TrainingError.invalidOption("--keep-best must be at least 1, got \(keepBest)") }
    }

    var record: [String: String] {
        var r = ["accum_steps": "\(accumSteps)", "keep_best": "\(keepBest)", "early_stop_min_delta": "\(earlyStopMinDelta)"]
        if let c = clipGradNorm { r["clip_grad_norm"] = "\(c)" }
        if let d = emaDecay { r["ema_decay"] = "\(d)" }
        if let p = earlyStopPatience { r["early_stop_patience"] = "\(p)" }
        if let m = monitor { r["monitor"] = m }
        return r
    }
}

extension TrainOptions {
    /// Images per optimizer step over all ranks: `batchSize × accumSteps`.
    public var stepBatch: Int { batchSize * runControl.accumSteps }
}

extension RunControlState {
    /// What one complete epoch's monitored value changes.
    struct Update {
        /// The value is the best so far (best.ckpt is rewritten).
        var isBest = false
        /// A ranked file to write now (best-K), and files that dropped out of the ranking.
        var keep: String?
        var dropped: [String] = []
    }

    /// Records epoch `epoch`'s monitored `value`: best, best-K ranking, early-stopping counters.
    mutating func record(epoch: Int, value: Double, options o: RunControlOptions) -> Update {
        let higher = RunControlOptions.higherIsBetter(monitor)
        func better(_ a: Double, than b: Double?, by delta: Double = 0) -> Bool {
            guard let b else { return true }
            return higher ? a > b + delta : a < b - delta
        }
        var u = Update()
        if better(value, than: best) { best = value; bestEpoch = epoch; u.isBest = true }
        if better(value, than: reference, by: o.earlyStopMinDelta) { reference = value; badEpochs = 0 } else { badEpochs += 1 }
        if let p = o.earlyStopPatience, badEpochs >= p { stopped = true }
        if o.keepBest > 1 {
            let entry = Entry(epoch: epoch, value: value, file: String(format: "best-epoch%03d.ckpt", epoch))
            var list = ranked + [entry]
            // Best first; ties keep the earlier epoch ahead.
            list.sort { better($0.value, than: $1.value) || ($0.value == $1.value && $0.epoch < $1.epoch) }
            u.dropped = list.dropFirst(o.keepBest).map(\.file).filter { $0 != entry.file }
            ranked = Array(list.prefix(o.keepBest))
            if ranked.contains(entry) { u.keep = entry.file }
        }
        return u
    }
}
