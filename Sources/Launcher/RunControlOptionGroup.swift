import ArgumentParser
import Training

/// Step mechanics and run control flags (shared by train and cv).
struct RunControlOptionGroup: ParsableArguments {
    @Option(help: "Gradient accumulation: micro-batches of --batch-size per optimizer step (allreduce once per step; the step batch is batch-size × K).") var accumSteps = 1
    @Option(help: "Clip the allreduced gradient to this global L2 norm.") var clipGradNorm: Float?
    @Option(help: "Keep an exponential moving average of the weights with this decay (e.g. 0.999); evaluated alongside (val_*_ema) and saved in checkpoints.") var emaDecay: Float?
    @Option(help: "Stop after this many epochs without an improvement of --monitor by more than --early-stop-min-delta.") var earlyStopPatience: Int?
    @Option(help: "Smallest change of --monitor that counts as an improvement for early stopping.") var earlyStopMinDelta = 0.0
    @Option(help: "Metric for best.ckpt, --keep-best and early stopping: val_acc (default with --val), val_loss, val_macro_f1, val_acc_ema, val_loss_ema, val_macro_f1_ema, train_loss, train_acc (default without --val). Losses are minimised, the rest maximised.") var monitor: String?
    @Option(help: "Keep the K best checkpoints by --monitor as best-epochNNN.ckpt (besides best.ckpt and last.ckpt).") var keepBest = 1

    func apply(to o: inout TrainOptions) {
        o.runControl.accumSteps = accumSteps
        o.runControl.clipGradNorm = clipGradNorm
        o.runControl.emaDecay = emaDecay
        o.runControl.earlyStopPatience = earlyStopPatience
        o.runControl.earlyStopMinDelta = earlyStopMinDelta
        o.runControl.monitor = monitor
        o.runControl.keepBest = keepBest
    }
}
